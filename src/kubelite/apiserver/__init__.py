"""kube-apiserver's counterpart: the one door to the cluster's state.

Everything (kubectl, the official clients, kubelite's own controllers, node agent, proxy
and DNS) reads and writes the cluster through this server; only it talks to the store.
"""
