"""What the node's components need from the Linux kernel that Python's standard library lacks.

Namespaces (entering a network namespace for a moment, named namespaces as ``ip netns``
keeps them), ``mount``, ``setns``, ``unshare`` and ``prctl``. The node agent builds the pod
network and runs containers with them, the proxy programs nftables inside the node's
namespace, and image programs (mariadb's entrypoint) mount their private directories.

None of that is Kubernetes: in Go it would be ``golang.org/x/sys/unix`` and CNI's ``ns``
package, libraries every component may use. So this package sits below the components in
the import-linter layers (``pyproject.toml``) and imports nothing else of kubelite: the proxy
reaches the node's namespace through it instead of through the node agent's code.
"""
