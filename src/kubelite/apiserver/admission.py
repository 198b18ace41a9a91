"""Admission: kube-apiserver's LimitRanger, PodSecurity, ResourceQuota and CertificateSubjectRestriction plugins.

kube-apiserver runs mutating admission before the strategy prepares an object and validating
admission after it validated, just before storage. Of its default plugins these two read
policy objects of the namespace: LimitRanger fills a new pod's missing requests and limits
from the namespace's LimitRanges and refuses what falls outside their min, max and ratio;
ResourceQuota prices the new object (apiquota) and charges it against every matching
quota's ``status.used`` with a compare-and-swap before the object is written, so two
concurrent creates cannot both take the last unit. The resourcequota controller recounts
afterwards and gives back what a failed write took.

CertificateSubjectRestriction refuses a CertificateSigningRequest for the
``kube-apiserver-client`` signer whose subject claims the ``system:masters`` group (a
certificate no authorization could ever restrict).

PodSecurity evaluates pods, and the pod templates of workloads, against the Pod Security
Standards level their namespace's ``pod-security.kubernetes.io/*`` labels choose
(kubelite.api.podsecurity has the checks): ``enforce`` refuses a pod (a create, or an update
that changes an image), ``warn`` answers with ``Warning`` headers, ``audit`` annotates the
request's audit event; templates get warn and audit, never enforce, as in Kubernetes. A
namespace's labels are validated on its writes, and a stricter enforce level reports the
existing pods that would now be refused. The labels come from a watch of the namespaces
(the plugin's namespace informer). Its configuration (:func:`load_configuration`, from
kube-apiserver's ``--admission-control-config-file``) sets the default policy of unlabelled
namespaces and exempts usernames, runtime classes and namespaces: an exempt request is not
evaluated at all, and its audit event says why (``pod-security.kubernetes.io/exempt``).

Most namespaces hold neither LimitRanges nor quotas: a watch keeps the set of namespaces that do, so that a
create elsewhere costs no store read (LimitRanger's informer and ResourceQuota's quota
lister do the same job in Kubernetes). The quotas themselves are read live when charged.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import decimal
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import yaml
from cryptography.x509.oid import NameOID

from kubelite.api import errors
from kubelite.api import podsecurity as psa
from kubelite.api import quota as apiquota
from kubelite.api.registry import ResourceType
from kubelite.api.resource import format_quantity, parse_quantity, quantity_format
from kubelite.api.validation import certificates
from kubelite.apiserver import requestcontext
from kubelite.apiserver.auth import REQUEST_USER
from kubelite.store import ConflictError, KeyNotFoundError, Store, StoreError

log = logging.getLogger(__name__)

Obj = dict[str, Any]
LIMIT_RANGES_PREFIX = "/registry/core/limitranges/"
QUOTAS_PREFIX = "/registry/core/resourcequotas/"
NAMESPACES_PREFIX = "/registry/core/namespaces/"
PODS_PREFIX = "/registry/core/pods/"
_PSA_MARK = psa.LABEL_PREFIX.encode()
LIMIT_RANGER_ANNOTATION = "kubernetes.io/limit-ranger"
# install.DefaultIgnoredResources: what quota never charges (events of both APIs).
QUOTA_IGNORED = frozenset({("", "events"), ("events.k8s.io", "events")})


class NamespacesHolding:
    """The namespaces that hold at least one object under a store prefix, kept current from a watch."""

    def __init__(self, store: Store, prefix: str) -> None:
        self.store, self.prefix = store, prefix
        self.keys: set[str] = set()
        self.started = False
        self._task: asyncio.Task[None] | None = None

    def may_hold(self, namespace: str) -> bool:
        """False only when the namespace surely holds none (an unstarted index vouches for nothing)."""
        return not self.started or any(k.startswith(namespace + "/") for k in self.keys)

    async def start(self) -> None:
        rev = await self._relist()
        self.started = True
        self._task = asyncio.create_task(self._follow(rev), name=f"admission-index-{self.prefix}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.started = False

    async def _relist(self) -> int:
        kvs, rev, _ = await self.store.list(self.prefix)
        self.keys = {kv.key[len(self.prefix):] for kv in kvs}
        return rev

    async def _follow(self, rev: int) -> None:
        while True:
            try:
                async with contextlib.aclosing(self.store.watch_batches(self.prefix, rev)) as batches:
                    async for batch in batches:
                        for ev in batch.events:
                            key = ev.kv.key[len(self.prefix):]
                            if ev.type == "DELETED":
                                self.keys.discard(key)
                            else:
                                self.keys.add(key)
                        rev = batch.revision
            except StoreError as e:
                self.started = False  # vouch for nothing until relisted
                log.info("admission index %s: %s; relisting", self.prefix, e)
                await asyncio.sleep(0.1)
                with contextlib.suppress(StoreError):
                    rev = await self._relist()
                    self.started = True


class NamespacePolicies:
    """The ``pod-security.kubernetes.io/*`` labels of every namespace that has some, from a watch.

    Only namespaces whose stored bytes mention the prefix are decoded, so the watch costs
    next to nothing where no namespace uses Pod Security. Until it has listed (and after it
    lost its watch) it is not ``synced``, and readers look the namespace up live.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.labels: dict[str, dict[str, str]] = {}
        self.synced = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        rev = await self._relist()
        self._task = asyncio.create_task(self._follow(rev), name="admission-namespace-policies")

    async def stop(self) -> None:
        self.synced = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @staticmethod
    def labels_of(value: bytes) -> dict[str, str] | None:
        if _PSA_MARK not in value:
            return None
        labels = (orjson.loads(value).get("metadata") or {}).get("labels") or {}
        found = {k: str(v) for k, v in labels.items() if k.startswith(psa.LABEL_PREFIX)}
        return found or None

    def _put(self, key: str, value: bytes | None) -> None:
        name = key[len(NAMESPACES_PREFIX):]
        labels = self.labels_of(value) if value is not None else None
        if labels is None:
            self.labels.pop(name, None)
        else:
            self.labels[name] = labels

    async def _relist(self) -> int:
        kvs, rev, _ = await self.store.list(NAMESPACES_PREFIX)
        self.labels = {}
        for kv in kvs:
            self._put(kv.key, kv.value)
        self.synced = True
        return rev

    async def _follow(self, rev: int) -> None:
        while True:
            try:
                async with contextlib.aclosing(self.store.watch_batches(NAMESPACES_PREFIX, rev)) as batches:
                    async for batch in batches:
                        for ev in batch.events:
                            self._put(ev.kv.key, None if ev.type == "DELETED" else ev.kv.value)
                        rev = batch.revision
            except StoreError as e:
                self.synced = False
                log.info("namespace policies: %s; relisting", e)
                await asyncio.sleep(0.1)
                with contextlib.suppress(StoreError):
                    rev = await self._relist()

    async def get(self, namespace: str) -> dict[str, str] | None:
        """The namespace's Pod Security labels (None: it has none)."""
        if self.synced:
            return self.labels.get(namespace)
        kv = await self.store.get(NAMESPACES_PREFIX + namespace)
        return self.labels_of(kv.value) if kv is not None else None


# ---------------------------------------------------------------------------- PodSecurity


class PodSecurity:
    """kube-apiserver's PodSecurity plugin (validating): pods, workloads' templates, namespaces."""

    def __init__(self, store: Store, config: psa.Configuration | None = None) -> None:
        self.store = store
        self.namespaces = NamespacePolicies(store)
        self.config = config or psa.Configuration()

    def _exempt(self, namespace: str) -> str:
        """Why a request is not evaluated at all: its namespace, then its user ("" when it is)."""
        if namespace in self.config.exemptions.namespaces:
            return "namespace"
        user = REQUEST_USER.get()
        if user is not None and user.name and user.name in self.config.exemptions.usernames:
            return "user"
        return ""

    async def validate(self, group: str, resource: str, namespace: str | None, obj: Obj, old: Obj | None) -> None:
        """Admit a create (``old`` None) or an update of the main resource; raises to refuse."""
        if not group and resource == "namespaces":
            self._validate_namespace(obj, old)
            await self._namespace_warnings(obj, old)
            return
        is_pod = not group and resource == "pods"
        if not namespace or not (is_pod or (group, resource) in psa.POD_TEMPLATE_RESOURCES):
            return
        if why := self._exempt(namespace):
            requestcontext.add_annotation(psa.EXEMPT_ANNOTATION, why)
            return
        policy, errs = psa.policy_to_evaluate(await self.namespaces.get(namespace), self.config.defaults)
        if is_pod:
            if not errs and policy.fully_privileged():
                requestcontext.add_annotation(psa.ENFORCE_POLICY_ANNOTATION, str(psa.DEFAULT))
                return
            if old is not None and not psa.significant_pod_update(obj, old):
                return
            self._evaluate(policy, errs, obj.get("metadata"), obj.get("spec"), _name(obj), enforce=True)
            return
        if not errs and policy.warn.level == policy.audit.level == psa.PRIVILEGED:
            return
        template = psa.pod_template(group, resource, obj)
        if template is not None:
            self._evaluate(policy, errs, template[0], template[1], _name(obj), enforce=False)

    def _evaluate(self, policy: psa.Policy, errs: list[errors.FieldError], meta: Any, spec: Any, name: str, *,
                  enforce: bool) -> None:
        """EvaluatePod: an exempt runtime class first, then enforce (pods only), audit, and warn
        (unless refused)."""
        runtime_class = spec.get("runtimeClassName") if isinstance(spec, dict) else None
        if runtime_class and runtime_class in self.config.exemptions.runtime_classes:
            requestcontext.add_annotation(psa.EXEMPT_ANNOTATION, "runtimeClass")
            return
        if errs:
            requestcontext.add_annotation(psa.ERROR_ANNOTATION,
                                          "Failed to parse policy: " + errors.aggregate(str(e) for e in errs))
        results: dict[psa.LevelVersion, psa.Result] = {}

        def result(lv: psa.LevelVersion) -> psa.Result:
            r = results.get(lv)
            if r is None:
                r = results[lv] = psa.evaluate(lv, meta, spec)
            return r

        refused: errors.StatusError | None = None
        if enforce:
            requestcontext.add_annotation(psa.ENFORCE_POLICY_ANNOTATION, str(policy.enforce))
            r = result(policy.enforce)
            if not r.allowed:
                refused = errors.forbidden_error("pods", name, f'violates PodSecurity "{policy.enforce}": {r.detail()}')
        r = result(policy.audit)
        if not r.allowed:
            requestcontext.add_annotation(psa.AUDIT_VIOLATIONS_ANNOTATION,
                                          f'would violate PodSecurity "{policy.audit}": {r.detail()}')
        if refused is not None:
            raise refused
        r = result(policy.warn)
        if not r.allowed:
            requestcontext.add_warning(f'would violate PodSecurity "{policy.warn}": {r.detail()}')

    def _validate_namespace(self, obj: Obj, old: Obj | None) -> None:
        """Invalid labels refuse a create, and an update that changes which ones are invalid."""
        _, errs = psa.policy_to_evaluate((obj.get("metadata") or {}).get("labels"), self.config.defaults)
        if not errs:
            return
        if old is not None:
            _, old_errs = psa.policy_to_evaluate((old.get("metadata") or {}).get("labels"), self.config.defaults)
            if old_errs == errs:
                return
        raise errors.invalid_error("Namespace", str((obj.get("metadata") or {}).get("name", "")), errs)

    async def _namespace_warnings(self, obj: Obj, old: Obj | None) -> None:
        """ValidateNamespace's warnings: an exempt namespace given a policy is told it is
        ignored (on create, and on an update whose enforce level would check its pods); another
        namespace given a stricter enforce level hears which of its pods it would refuse."""
        defaults = self.config.defaults
        labels = (obj.get("metadata") or {}).get("labels")
        new_policy, _ = psa.policy_to_evaluate(labels, defaults)
        name = str((obj.get("metadata") or {}).get("name", ""))
        if old is not None:
            old_policy, _ = psa.policy_to_evaluate((old.get("metadata") or {}).get("labels"), defaults)
            if not psa.enforce_tightened(new_policy, old_policy):
                return
        if name in self.config.exemptions.namespaces:
            if warning := psa.exempt_namespace_warning(name, new_policy, defaults, labels):
                requestcontext.add_warning(warning)
            return
        if old is None:
            return
        try:
            kvs, _, _ = await self.store.list(f"{PODS_PREFIX}{name}/")
        except StoreError as e:
            log.info("PodSecurity: listing the pods of %s: %s", name, e)
            requestcontext.add_warning("failed to list pods while checking new PodSecurity enforce level")
            return
        pods = [orjson.loads(kv.value) for kv in kvs]
        for warning in psa.existing_pods_warnings(name, new_policy.enforce, pods,
                                                  self.config.exemptions.runtime_classes):
            requestcontext.add_warning(warning)


ADMISSION_CONFIG_GROUP = "apiserver.config.k8s.io"
ADMISSION_CONFIG_VERSIONS = ("v1", "v1alpha1")


class AdmissionConfigError(Exception):
    """kube-apiserver refuses to start with this message."""


def load_configuration(path: str) -> psa.Configuration:
    """PodSecurity's configuration from kube-apiserver's ``--admission-control-config-file``:
    an AdmissionConfiguration (apiserver.config.k8s.io/v1) whose ``plugins`` entry named
    PodSecurity holds a PodSecurityConfiguration, embedded as ``configuration`` or in the
    file ``path`` names (relative to this file's directory). Without such an entry, the
    default. Errors are kube-apiserver's, prefixed as its admission plugin initialization
    prefixes them."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise AdmissionConfigError(f'unable to read admission control configuration from "{path}" '
                                   f"[open {path}: {(e.strerror or str(e)).lower()}]") from None
    try:
        obj = yaml.safe_load(data) if data.strip() else {}
    except yaml.YAMLError as e:
        raise AdmissionConfigError(f'unable to read admission control configuration from "{path}": '
                                   f"error converting YAML to JSON: {e}") from None
    if not isinstance(obj, dict):
        raise AdmissionConfigError(f'unable to read admission control configuration from "{path}": '
                                   "couldn't get version/kind; json parse error")
    api_version, kind = str(obj.get("apiVersion") or ""), str(obj.get("kind") or "")
    group, _, version = api_version.rpartition("/")
    if group != ADMISSION_CONFIG_GROUP or version not in ADMISSION_CONFIG_VERSIONS or kind != "AdmissionConfiguration":
        # kube-apiserver would read an unknown kind as a legacy file and give PodSecurity its
        # defaults without a word; a refusal says what it wants.
        raise AdmissionConfigError(
            f'admission control configuration "{path}" must be an AdmissionConfiguration '
            f'({ADMISSION_CONFIG_GROUP}/v1), not kind "{kind}" of apiVersion "{api_version}"')
    plugins = obj.get("plugins") or []
    if not isinstance(plugins, list) or not all(isinstance(p, dict) for p in plugins):
        raise AdmissionConfigError(f'unable to read admission control configuration from "{path}": json: cannot '
                                   "unmarshal into Go struct field AdmissionConfiguration.plugins of type "
                                   "[]v1.AdmissionPluginConfiguration")
    entry = next((p for p in plugins if p.get("name") == "PodSecurity"), None)
    if entry is None:
        return psa.Configuration()
    config: Any = entry.get("configuration")
    if entry.get("path"):
        plugin_path = os.path.join(os.path.dirname(os.path.abspath(path)), str(entry["path"]))
        try:
            with open(plugin_path, "rb") as f:
                config = yaml.safe_load(f.read())
        except OSError as e:
            raise AdmissionConfigError(f"Couldn't open admission plugin configuration {plugin_path}: "
                                       f"open {plugin_path}: {(e.strerror or str(e)).lower()}") from None
        except yaml.YAMLError as e:
            raise AdmissionConfigError(f'couldn\'t init admission plugin "PodSecurity": failed to decode: {e}') from None
    try:
        return psa.configuration_from(config)
    except psa.ConfigurationError as e:
        prefix = "couldn't init" if e.decoding else "failed to initialize"
        raise AdmissionConfigError(f'{prefix} admission plugin "PodSecurity": {e}') from None


def _quantity(text: Any) -> tuple[decimal.Decimal, str]:
    """A quantity's value and its canonical text (``Quantity.String()``)."""
    value = parse_quantity(text)
    return value, format_quantity(value, quantity_format(text))


# ---------------------------------------------------------------------------- LimitRanger


def _default_requirements(limit_range: Obj) -> tuple[dict[str, Any], dict[str, Any]]:
    requests: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    for item in (limit_range.get("spec") or {}).get("limits") or []:
        if item.get("type") == "Container":
            requests.update(item.get("defaultRequest") or {})
            limits.update(item.get("default") or {})
    return requests, limits


def limit_ranger_mutate(pod: Obj, limit_range: Obj) -> None:
    """PodMutateLimitFunc: fill what a container leaves unset from the Container item's defaults."""
    requests, limits = _default_requirements(limit_range)
    notes: list[str] = []
    spec = pod.get("spec") or {}
    for label, key in (("container", "containers"), ("init container", "initContainers")):
        for c in spec.get(key) or []:
            resources = c.setdefault("resources", {})
            set_requests = [k for k in requests if k not in (resources.get("requests") or {})]
            set_limits = [k for k in limits if k not in (resources.get("limits") or {})]
            if set_limits:
                resources["limits"] = {**(resources.get("limits") or {}), **{k: limits[k] for k in set_limits}}
            if set_requests:
                resources["requests"] = {**(resources.get("requests") or {}), **{k: requests[k] for k in set_requests}}
            if set_requests:
                notes.append(", ".join(sorted(set_requests)) + f" request for {label} {c.get('name', '')}")
            if set_limits:
                notes.append(", ".join(sorted(set_limits)) + f" limit for {label} {c.get('name', '')}")
    if notes:
        meta = pod.setdefault("metadata", {})
        meta["annotations"] = {**(meta.get("annotations") or {}),
                               LIMIT_RANGER_ANNOTATION: "LimitRanger plugin set: " + "; ".join(notes)}


def _min(kind: str, name: str, enforced: Any, requests: dict[str, Any], limits: dict[str, Any]) -> str | None:
    e, es = _quantity(enforced)
    if name not in requests:
        return f"minimum {name} usage per {kind} is {es}.  No request is specified"
    r, rs = _quantity(requests[name])
    if r < e:
        return f"minimum {name} usage per {kind} is {es}, but request is {rs}"
    if name in limits:
        lim, ls = _quantity(limits[name])
        if lim < e:
            return f"minimum {name} usage per {kind} is {es}, but limit is {ls}"
    return None


def _max(kind: str, name: str, enforced: Any, requests: dict[str, Any], limits: dict[str, Any]) -> str | None:
    e, es = _quantity(enforced)
    if name not in limits:
        return f"maximum {name} usage per {kind} is {es}.  No limit is specified"
    lim, ls = _quantity(limits[name])
    if lim > e:
        return f"maximum {name} usage per {kind} is {es}, but limit is {ls}"
    if name in requests:
        r, rs = _quantity(requests[name])
        if r > e:
            return f"maximum {name} usage per {kind} is {es}, but request is {rs}"
    return None


def _ratio(kind: str, name: str, enforced: Any, requests: dict[str, Any], limits: dict[str, Any]) -> str | None:
    e, es = _quantity(enforced)
    r = _quantity(requests[name])[0] if name in requests else decimal.Decimal(0)
    lim = _quantity(limits[name])[0] if name in limits else decimal.Decimal(0)
    if r == 0:
        return f"{name} max limit to request ratio per {kind} is {es}, but no request is specified or request is 0"
    if lim == 0:
        return f"{name} max limit to request ratio per {kind} is {es}, but no limit is specified or limit is 0"
    # Compared in milli-units as Go does; shown with %f.
    observed = (lim * 1000).to_integral_value(decimal.ROUND_CEILING) / (r * 1000).to_integral_value(decimal.ROUND_CEILING)
    if observed > e:
        return f"{name} max limit to request ratio per {kind} is {es}, but provided ratio is {float(observed):f}"
    return None


def _check(kind: str, item: Obj, requests: dict[str, Any], limits: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for field, check in (("min", _min), ("max", _max), ("maxLimitRequestRatio", _ratio)):
        for name, enforced in sorted((item.get(field) or {}).items()):
            problem = check(kind, name, enforced, requests, limits)
            if problem:
                out.append(problem)
    return out


def _pod_sum(spec: Obj, bucket: str) -> dict[str, Any]:
    """The pod-level totals LimitRanger compares: containers summed (a name only when all set it),
    at least each init container's."""
    containers = spec.get("containers") or []
    lists = [((c.get("resources") or {}).get(bucket) or {}) for c in containers]
    names = set().union(*(set(x) for x in lists)) if lists else set()
    total: dict[str, Any] = {}
    for name in names:
        if all(name in x for x in lists):
            values = [_quantity(x[name]) for x in lists]
            total[name] = format_quantity(sum((v for v, _ in values), decimal.Decimal(0)), quantity_format(lists[0][name]))
    for c in spec.get("initContainers") or []:
        for name, text in ((c.get("resources") or {}).get(bucket) or {}).items():
            if name not in total or _quantity(text)[0] > _quantity(total[name])[0]:
                total[name] = text
    return total


def limit_ranger_validate(pod: Obj, limit_range: Obj) -> list[str]:
    """PodValidateLimitFunc: every problem, per container (then init container) and per pod."""
    problems: list[str] = []
    spec = pod.get("spec") or {}
    for item in (limit_range.get("spec") or {}).get("limits") or []:
        kind = item.get("type")
        if kind == "Container":
            for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
                res = c.get("resources") or {}
                problems += _check(kind, item, dict(res.get("requests") or {}), dict(res.get("limits") or {}))
        elif kind == "Pod":
            problems += _check(kind, item, _pod_sum(spec, "requests"), _pod_sum(spec, "limits"))
    return problems


# ---------------------------------------------------------------------------- the plugins


class Admission:
    """The two policy plugins over one store; the registry calls :meth:`mutate` and :meth:`validate`."""

    def __init__(self, store: Store, pod_security: psa.Configuration | None = None) -> None:
        self.store = store
        self.limit_ranges = NamespacesHolding(store, LIMIT_RANGES_PREFIX)
        self.quotas = NamespacesHolding(store, QUOTAS_PREFIX)
        self.pod_security = PodSecurity(store, pod_security)

    async def start(self) -> None:
        await self.limit_ranges.start()
        await self.quotas.start()
        await self.pod_security.namespaces.start()

    async def stop(self) -> None:
        await self.limit_ranges.stop()
        await self.quotas.stop()
        await self.pod_security.namespaces.stop()

    async def _list(self, prefix: str, namespace: str) -> list[tuple[Obj, int, str]]:
        kvs, _, _ = await self.store.list(f"{prefix}{namespace}/")
        return [(orjson.loads(kv.value), kv.mod_revision, kv.key) for kv in kvs]

    async def mutate(
        self, rt: ResourceType, namespace: str | None, obj: Obj, defaults: Callable[[Obj], None] | None = None
    ) -> bool:
        """Mutating admission of a create: LimitRanger's defaults (pods). True when it changed the object.

        ``defaults`` (the kind's defaulting) is applied first when LimitRanger acts: kube-apiserver
        admits the decoded, defaulted object (a container's limits already copied to its requests).
        """
        if rt.group or rt.plural != "pods" or not namespace or not self.limit_ranges.may_hold(namespace):
            return False
        if defaults is not None:
            defaults(obj)
        before = orjson.dumps(obj)
        for lr, _, _ in await self._list(LIMIT_RANGES_PREFIX, namespace):
            limit_ranger_mutate(obj, lr)
        return orjson.dumps(obj) != before

    async def validate(
        self, rt: ResourceType, namespace: str | None, obj: Obj, *, dry_run: bool,
        before_quota: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Validating admission of a create, in kube-apiserver's plugin order: LimitRanger's checks,
        PodSecurity, ``before_quota`` (the plugins between, the strategy's: Priority),
        CertificateSubjectRestriction, then ResourceQuota's charge."""
        if rt.namespaced and namespace and not rt.group and rt.plural == "pods" and self.limit_ranges.may_hold(namespace):
            for lr, _, _ in await self._list(LIMIT_RANGES_PREFIX, namespace):
                problems = limit_ranger_validate(obj, lr)
                if problems:
                    raise errors.forbidden_error(rt.plural, _name(obj), errors.aggregate(problems), rt.group)
        await self.pod_security.validate(rt.group, rt.plural, namespace if rt.namespaced else None, obj, None)
        if before_quota is not None:
            await before_quota()
        if rt.group == "certificates.k8s.io" and rt.plural == "certificatesigningrequests":
            certificate_subject_restriction(rt, obj)
        if not rt.namespaced or not namespace:
            return
        if (rt.group, rt.plural) in QUOTA_IGNORED or not self.quotas.may_hold(namespace):
            return
        for _attempt in range(8):
            quotas = await self._list(QUOTAS_PREFIX, namespace)
            charged = self._charge(rt, obj, quotas)
            if dry_run or not charged:
                return
            try:
                for new, rev, key in charged:
                    await self.store.update(key, orjson.dumps(new), expected_mod_revision=rev)
                return
            except (ConflictError, KeyNotFoundError):
                continue  # another create charged first (or the quota went): price again
        raise errors.StatusError(500, "InternalError", "Internal error occurred: resource quota evaluation timed out")

    async def validate_update(self, rt: ResourceType, namespace: str | None, new: Obj, old: Obj) -> None:
        """Validating admission of an update of the main resource (of these plugins, PodSecurity's)."""
        await self.pod_security.validate(rt.group, rt.plural, namespace if rt.namespaced else None, new, old)

    def _charge(self, rt: ResourceType, obj: Obj, quotas: list[tuple[Obj, int, str]]) -> list[tuple[Obj, int, str]]:
        """The quotas with the object's usage added (checkRequest), or a Forbidden error."""
        name = _name(obj)
        interesting: list[tuple[Obj, int, str]] = []
        for q, rev, key in quotas:
            hard = (q.get("status") or {}).get("hard") or {}
            if not apiquota.matches(q, rt.plural, rt.group, obj, hard):
                continue
            restricted = apiquota.matching_resources(rt.plural, rt.group, hard)
            qname = (q.get("metadata") or {}).get("name", "")
            if not rt.group and rt.plural == "pods":
                missing = apiquota.missing_constraints(restricted, obj)
                if missing:
                    raise errors.forbidden_error(rt.plural, name, f"failed quota: {qname}: {missing}", rt.group)
            used = (q.get("status") or {}).get("used") or {}
            unknown = [r for r in restricted if r not in used]
            if unknown:
                raise errors.forbidden_error(
                    rt.plural, name, f"status unknown for quota: {qname}, resources: {','.join(sorted(restricted))}",
                    rt.group,
                )
            interesting.append((q, rev, key))
        if not interesting:
            return []
        delta = apiquota.usage(rt.plural, rt.group, obj)
        if apiquota.is_zero(delta):
            return []
        out = []
        for q, rev, key in interesting:
            status = q.get("status") or {}
            hard, used = status.get("hard") or {}, status.get("used") or {}
            requested = apiquota.mask(delta, hard)
            new_usage = apiquota.add(used, requested)
            over = apiquota.exceeded(apiquota.mask(new_usage, requested), hard)
            if over:
                raise errors.forbidden_error(
                    rt.plural, name,
                    f"exceeded quota: {(q.get('metadata') or {}).get('name', '')}, "
                    f"requested: {apiquota.pretty(apiquota.mask(requested, over))}, "
                    f"used: {apiquota.pretty(apiquota.mask(used, over))}, "
                    f"limited: {apiquota.pretty(apiquota.mask(hard, over))}",
                    rt.group,
                )
            if new_usage != used:
                out.append(({**q, "status": {**status, "used": dict(sorted(new_usage.items()))}}, rev, key))
        return out


def certificate_subject_restriction(rt: ResourceType, csr: Obj) -> None:
    """The CertificateSubjectRestriction plugin: no system:masters client certificates through the API."""
    spec = csr.get("spec") or {}
    if spec.get("signerName") != certificates.KUBE_APISERVER_CLIENT_SIGNER:
        return
    try:
        request = certificates.parse_csr(base64.b64decode(spec.get("request") or ""))
    except ValueError as e:
        raise errors.forbidden_error(rt.plural, _name(csr), f"failed to parse CSR: {e}", rt.group) from None
    orgs = [str(a.value) for a in request.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    if "system:masters" in orgs:
        raise errors.forbidden_error(
            rt.plural, _name(csr),
            f"use of {certificates.KUBE_APISERVER_CLIENT_SIGNER} signer with system:masters group is not allowed",
            rt.group,
        )


def _name(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    return str(meta.get("name") or meta.get("generateName") or "Unknown")
