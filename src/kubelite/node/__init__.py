"""The node agent: kubelite's kubelet, CNI plugin and container runtime, in one process per node.

Kubernetes splits a node into the kubelet, a CRI runtime (containerd + runc) and CNI plugins,
talking over gRPC and exec. kubelite keeps their boundaries as modules of one Python process
(``network`` is the CNI plugin, ``runtime`` the CRI runtime) because on one machine the
processes would only add latency and failure modes; pods still outlive the agent through
per-container shims, as with containerd. The kubelet itself is split as Kubernetes splits
it: ``agent`` wires the parts and dispatches pods, ``nodestatus`` keeps the Node and its
Lease, ``podworker`` runs one sync loop per pod, ``podconfig`` says what containers start with.
"""
