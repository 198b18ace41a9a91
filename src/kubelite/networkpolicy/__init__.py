"""kube-network-policies' counterpart: NetworkPolicy (networking.k8s.io/v1) enforced in nftables.

``ruleset`` turns policies, pods and namespaces into the objects of ``table inet
kubelite-netpol`` in the node's network namespace and diffs them into partial transactions,
without I/O; ``controller`` watches the three kinds through ``kubelite.client`` informers and
writes the transactions. ``kubelite up`` runs it in the node agent's process, beside the proxy
(``kubelite agent --with-proxy``), as a real node runs kube-network-policies beside kube-proxy.
"""
