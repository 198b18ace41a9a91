"""Object metadata the API server owns: uid, timestamps, generation, names from generateName.

Kept apart from the HTTP handlers because every write path (create, update, patch, apply,
status) needs the same rules, and they must agree with kube-apiserver's to the letter:
``generation`` moves only when something other than metadata and status changes, a no-op
update keeps the resourceVersion, and ``generateName`` gets five characters from the same
alphabet Kubernetes uses (no vowels, so no words).
"""

from __future__ import annotations

import os
import random
from typing import Any

from kubelite.api import timeutil

# utilrand's alphabet: consonants and digits without look-alikes.
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_random = random.Random()
# API server workers are forks of `up`: without a fresh seed each would draw the same
# names as the others, and every generateName create would collide across processes.
os.register_at_fork(after_in_child=_random.seed)
SERVER_OWNED = ("uid", "creationTimestamp", "resourceVersion", "generation", "selfLink")


# Every write path stamps through this name; the format (and its once-a-second cache)
# lives in kubelite.api.timeutil, shared with the components.
now_rfc3339 = timeutil.now_rfc3339


def generate_name(prefix: str) -> str:
    # Kubernetes trims the prefix so that the result stays a valid 63-character name.
    if len(prefix) > 58:
        prefix = prefix[:58]
    # A plain PRNG, as Kubernetes' utilrand: these names need to differ, not to be secret
    # (collisions are retried), and SystemRandom costs a syscall per character. One draw
    # gives all five characters (27**5 < 2**32; the modulo bias is 0.3%, harmless here).
    n = _random.getrandbits(32) % _NAME_SPACE
    chars = []
    for _ in range(5):
        n, i = divmod(n, 27)
        chars.append(_ALPHABET[i])
    return prefix + "".join(chars)


_NAME_SPACE = len(_ALPHABET) ** 5


def new_uid() -> str:
    """A random (version 4) UUID, formatted without building a uuid.UUID (a tenth of the cost).

    The randomness is the kernel's, as for uuid4, drawn for many uids at once (one syscall
    per 256 creates instead of one each); a forked child starts with a fresh pool.
    """
    pool, pos = _uid_pool
    if pos >= len(pool):
        pool, pos = os.urandom(16 * 256).hex(), 0
    h = pool[pos : pos + 32]
    _uid_pool[:] = [pool, pos + 32]
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


_VARIANT = "89ab"  # RFC 4122 variant bits 10xx
_uid_pool: list[Any] = ["", 0]
os.register_at_fork(after_in_child=lambda: _uid_pool.__setitem__(slice(None), ["", 0]))


def spec_changed(new: dict[str, Any], old: dict[str, Any]) -> bool:
    """Whether anything but metadata and status differs: what bumps metadata.generation."""
    keys = (set(new) | set(old)) - {"metadata", "status", "apiVersion", "kind"}
    return any(new.get(k) != old.get(k) for k in keys)


def prepare_create(
    obj: dict[str, Any], *, has_status: bool, namespaced: bool, namespace: str | None, generation: bool = False
) -> None:
    meta = obj.setdefault("metadata", {})
    for k in SERVER_OWNED:
        meta.pop(k, None)
    meta["uid"] = new_uid()
    meta["creationTimestamp"] = now_rfc3339()
    if generation:
        meta["generation"] = 1
    for k in ("deletionTimestamp", "deletionGracePeriodSeconds"):
        meta.pop(k, None)
    if namespaced and namespace:
        meta["namespace"] = namespace
    elif not namespaced:
        meta.pop("namespace", None)
    if has_status:
        obj.pop("status", None)


def carry_server_fields(new: dict[str, Any], old: dict[str, Any]) -> None:
    """On update, the server-owned metadata comes from the stored object, not the client."""
    nm, om = new.setdefault("metadata", {}), old.get("metadata", {})
    for k in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
        if k in om:
            nm[k] = om[k]
        else:
            nm.pop(k, None)
    nm.pop("selfLink", None)


def strip_for_compare(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without the fields that change on every write, to detect no-op updates."""
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k not in ("resourceVersion", "managedFields")}
    return {**obj, "metadata": meta}
