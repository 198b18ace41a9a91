"""kubelite: Kubernetes Services on one machine.

The package is laid out like Kubernetes itself: one sub-package per component, named after
its Kubernetes counterpart (``apiserver``, ``store``, ``client``, ``controllers``, ``node``,
``proxy``, ``dns``), plus ``api`` for the object model shared by all of them.
"""

__version__ = "0.1.0"
