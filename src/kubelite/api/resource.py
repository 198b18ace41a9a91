"""Resource quantities and the QoS class a pod's requests and limits give it.

One home for both, because the API server (which stamps ``status.qosClass`` at creation)
and the node agent (which reports it in every status) must agree: two copies that compared
quantities differently once created a pod Burstable and then flipped it to Guaranteed
(``cpu: "1"`` against ``cpu: "1000m"``). Quantities compare by value, as
``resource.Quantity.Cmp`` does, never as strings.
"""

from __future__ import annotations

import decimal
import re
from collections.abc import Mapping
from typing import Any, Literal

QOSClass = Literal["Guaranteed", "Burstable", "BestEffort"]

_SUFFIX: dict[str, int | decimal.Decimal] = {
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
    "n": decimal.Decimal("1e-9"), "u": decimal.Decimal("1e-6"), "m": decimal.Decimal("1e-3"), "": 1,
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+)(?:([eE][+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?)$")

# v1qos: only these resources decide the class.
_QOS_RESOURCES = ("cpu", "memory")


def parse_quantity(text: str | int | float) -> decimal.Decimal:
    """A resource.Quantity as an exact decimal (``500m`` → 0.5, ``1Gi`` → 1073741824)."""
    m = _QUANTITY.match(str(text).strip())
    if not m:
        raise ValueError(f"quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {text!r}")
    number = decimal.Decimal(m.group(1))
    if m.group(2):
        return number * decimal.Decimal("1" + m.group(2))
    return number * decimal.Decimal(_SUFFIX[m.group(3) or ""])


def _quantity_or_zero(value: Any) -> decimal.Decimal:
    try:
        return parse_quantity(value)
    except (ValueError, decimal.InvalidOperation):
        # Validation refuses malformed quantities before a pod is stored; a value that
        # still cannot be read counts as unset rather than failing a status sync.
        return decimal.Decimal(0)


def pod_qos_class(spec: Mapping[str, Any]) -> QOSClass:
    """v1qos.GetPodQOS over a pod spec's containers and init containers.

    Sums the non-zero cpu and memory requests and limits of every container; Guaranteed
    needs every container to limit both and the sums of requests to equal the sums of
    limits. A missing request counts as its limit, which is what API defaulting stores.
    """
    requests: dict[str, decimal.Decimal] = {}
    limits: dict[str, decimal.Decimal] = {}
    guaranteed = True
    containers = [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]
    for container in containers:
        resources = container.get("resources") or {}
        lim_in = resources.get("limits") or {}
        req_in = {**{k: v for k, v in lim_in.items()}, **(resources.get("requests") or {})}
        for name in _QOS_RESOURCES:
            req = _quantity_or_zero(req_in[name]) if name in req_in else decimal.Decimal(0)
            if req != 0:
                requests[name] = requests.get(name, decimal.Decimal(0)) + req
        found = set()
        for name in _QOS_RESOURCES:
            lim = _quantity_or_zero(lim_in[name]) if name in lim_in else decimal.Decimal(0)
            if lim != 0:
                limits[name] = limits.get(name, decimal.Decimal(0)) + lim
                found.add(name)
        if found != set(_QOS_RESOURCES):
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and requests == limits:
        return "Guaranteed"
    return "Burstable"


# -- canonical text: what resource.Quantity.String() prints --------------------------------------

QuantityFormat = Literal["BinarySI", "DecimalSI", "DecimalExponent"]
_BINARY = (("Ei", 2**60), ("Pi", 2**50), ("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10))
_DECIMAL = {18: "E", 15: "P", 12: "T", 9: "G", 6: "M", 3: "k", 0: "", -3: "m", -6: "u", -9: "n"}


def quantity_format(text: str | int | float) -> QuantityFormat:
    """The format a parsed quantity keeps (and prints in): from the suffix it was written with."""
    m = _QUANTITY.match(str(text).strip())
    if m and m.group(2):
        return "DecimalExponent"
    if m and (m.group(3) or "").endswith("i"):
        return "BinarySI"
    return "DecimalSI"


def format_quantity(value: decimal.Decimal | int, fmt: QuantityFormat = "DecimalSI") -> str:
    """``Quantity.String()``: the canonical text of ``value`` in ``fmt`` (``1000m`` → ``1``, ``2048Mi`` → ``2Gi``).

    Values are rounded up to nano units, as a Quantity holds them. A binary quantity under
    1024 in magnitude, or with a fraction, prints in decimal, as Go's CanonicalizeBytes does.
    """
    v = decimal.Decimal(value)
    nanos = (v * 10**9).to_integral_value(rounding=decimal.ROUND_CEILING)
    if nanos == 0:
        return "0"
    sign = "-" if nanos < 0 else ""
    nanos = abs(nanos)
    if fmt == "BinarySI" and nanos % 10**9 == 0 and nanos >= 1024 * 10**9:
        whole = int(nanos) // 10**9
        for suffix, size in _BINARY:
            if whole % size == 0:
                return f"{sign}{whole // size}{suffix}"
        return f"{sign}{whole}"
    # Decimal: the largest exponent (a multiple of 3) that leaves an integer mantissa.
    mantissa, exp = int(nanos), -9
    while exp < 18 and mantissa % 1000 == 0:
        mantissa //= 1000
        exp += 3
    if fmt == "DecimalExponent":
        return f"{sign}{mantissa}" + (f"e{exp}" if exp else "")
    return f"{sign}{mantissa}{_DECIMAL[exp]}"
