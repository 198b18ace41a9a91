"""kube-proxy's counterpart: the ClusterIP datapath in nftables, as kube-proxy's nftables mode.

``ruleset`` turns the desired state (Services, their ports and endpoints) into nftables
text and diffs it for partial syncs, without I/O; ``proxier`` tracks changes from the API
and writes the transactions into the node's network namespace; ``conntrack`` flushes UDP
flows left pointing at endpoints that are gone. ``kubelite proxy`` runs it (see
``proxier.add_arguments``/``main``), as does ``python -m kubelite.proxy`` (``__main__``).
"""
