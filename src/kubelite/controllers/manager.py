"""The controller-manager process: every controller over one client and shared informers.

Controllers are registered by import path so that a missing or broken controller module
fails that controller loudly at start, not the import of all the others.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import os

from kubelite.client import Client
from kubelite.controllers.base import Context, Controller, Options

log = logging.getLogger(__name__)

CONTROLLERS: dict[str, str] = {
    "endpointslice": "kubelite.controllers.endpointslice:EndpointSliceController",
    "endpoints": "kubelite.controllers.endpoints:EndpointsController",
    "replicaset": "kubelite.controllers.replicaset:ReplicaSetController",
    "replicationcontroller": "kubelite.controllers.replication:ReplicationManager",
    "deployment": "kubelite.controllers.deployment:DeploymentController",
    "garbagecollector": "kubelite.controllers.garbagecollector:GarbageCollector",
    "namespace": "kubelite.controllers.namespace:NamespaceController",
    "scheduler": "kubelite.controllers.scheduler:Scheduler",
    "serviceaccount": "kubelite.controllers.serviceaccount:ServiceAccountController",
    "nodelifecycle": "kubelite.controllers.nodelifecycle:NodeLifecycleController",
    "taint-eviction-controller": "kubelite.controllers.tainteviction:TaintEvictionController",
    "disruption": "kubelite.controllers.disruption:DisruptionController",
    "resourcequota": "kubelite.controllers.resourcequota:ResourceQuotaController",
    "csrsigning": "kubelite.controllers.certificates:CSRSigningController",
    "job": "kubelite.controllers.job:JobController",
    "cronjob": "kubelite.controllers.cronjob:CronJobController",
    "ttl-after-finished": "kubelite.controllers.ttlafterfinished:TTLAfterFinishedController",
    "statefulset": "kubelite.controllers.statefulset:StatefulSetController",
    "daemonset": "kubelite.controllers.daemonset:DaemonSetController",
    "persistentvolume-binder": "kubelite.controllers.persistentvolume:PersistentVolumeController",
    "pvc-protection": "kubelite.controllers.persistentvolume:PVCProtectionController",
    "pv-protection": "kubelite.controllers.persistentvolume:PVProtectionController",
    "local-path-provisioner": "kubelite.controllers.localpath:LocalPathProvisioner",
    "clusterrole-aggregation": "kubelite.controllers.clusterroleaggregation:ClusterRoleAggregationController",
}


def load(name: str) -> type[Controller]:
    module, _, cls = CONTROLLERS[name].partition(":")
    controller: type[Controller] = getattr(importlib.import_module(module), cls)
    return controller


async def run(kubeconfig: str | os.PathLike[str], enabled: list[str] | None = None,
              options: Options | None = None, *, scheduler_kubeconfig: str | os.PathLike[str] | None = None) -> None:
    """Run the controllers. With ``scheduler_kubeconfig`` the scheduler is kube-scheduler in
    this process: its own client (identity ``system:kube-scheduler``) and its own informers,
    as the separate binary would have."""
    client = Client.from_kubeconfig(kubeconfig, user_agent="kube-controller-manager/kubelite")
    ctx = Context(client, options=options)
    clients = [client]
    contexts = [ctx]
    controllers: list[Controller] = []
    for name in enabled or list(CONTROLLERS):
        own = ctx
        if name == "scheduler" and scheduler_kubeconfig:
            sched_client = Client.from_kubeconfig(scheduler_kubeconfig, user_agent="kube-scheduler/kubelite")
            own = Context(sched_client, component="default-scheduler")
            clients.append(sched_client)
            contexts.append(own)
        try:
            controllers.append(load(name)(own))
        except (ImportError, AttributeError) as e:
            log.warning("controller %s is not available: %s", name, e)
    for c in contexts:
        c.start()
    try:
        if ctx.credentials is not None:
            await ctx.credentials.start()
        await asyncio.gather(*(c.wait_synced() for c in contexts))
        # The synced caches live as long as the process: keep full collections from walking
        # them again and again (they showed as 100+ ms pauses with 10,000 pods cached).
        gc.collect()
        gc.freeze()
        log.info("controllers running: %s", ", ".join(c.name for c in controllers))
        await asyncio.gather(*(c.run() for c in controllers), asyncio.Event().wait())
    finally:
        for c in contexts:
            await c.stop()
        if ctx.credentials is not None:
            await ctx.credentials.stop()
        for cl in clients:
            await cl.close()
