"""The object model every component shares: errors, selectors, schemas, patches, printers.

This is kubelite's counterpart of Kubernetes' apimachinery plus the core API types. It holds
pure logic only (no I/O), so the API server, the client and the controllers can all use it
and it can be unit-tested without a cluster.

It is also the one home of what every component must compute alike: the static types of the
Kubernetes JSON they read (``types``), the API's time formats (``timeutil``), quantities and
the pod QoS class (``resource``).
"""
