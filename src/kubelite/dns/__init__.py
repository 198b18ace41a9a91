"""Cluster DNS: CoreDNS's kubernetes plugin (plus forward, cache, health, ready, prometheus).

``python -m kubelite.dns`` is the server the ``coredns`` Deployment runs (image
``kubelite/dns``); :mod:`kubelite.dns.manifests` has the objects ``kubelite up`` creates and
the probe it waits on. Records: :mod:`.records`; wire format: :mod:`.wire`; outside names:
:mod:`.forward`; the server and its informers: :mod:`.server`; metrics: :mod:`.metrics`.
"""
