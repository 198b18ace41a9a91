"""Network namespaces: enter one for a moment, and keep named ones where ``ip netns`` does.

A socket belongs to the namespace it was created in, whichever thread uses it later; so
the node agent (probes, port-forward, the API relay), the proxy (its netlink and nftables
sockets) and ``kubelite up`` (asking cluster DNS from inside the node) all open their
sockets in a namespace with :func:`in_netns` and use them from the event loop afterwards.

Every switch into a namespace checks the kernel agrees (namespace inode) before anything is
changed, so a failed switch cannot make the host's network the target.

The node's namespace and its bridge are named here too: the node agent makes them and the
proxy programs nftables and a route in them, so the two names are a seam between the two
components that belongs to neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import fcntl
import os
import pathlib
import socket
from collections.abc import Awaitable, Callable, Iterator

from pyroute2 import netns as pyroute2_netns

# ``ip netns`` keeps named namespaces as bind mounts here; pyroute2 uses the same place.
NETNS_DIR = pathlib.Path("/run/netns")
# The node namespace's bridge: the pods' gateway, and the way to ClusterIPs (the proxy
# routes the service CIDR onto it).
BRIDGE = "kl-br0"

CLONE_NEWNET = 0x40000000
NS_GET_NSTYPE = 0xB703  # ioctl on a namespace file (Linux 4.11): its CLONE_NEW* type
_libc = ctypes.CDLL(None, use_errno=True)


class NotANamespace(OSError):
    """The path exists but no namespace is mounted on it (yet).

    ``ip netns add`` and pyroute2 first create an empty file under /run/netns, then
    bind-mount the new namespace onto it; in between (or after a crash in between) opening
    the path gives that empty file, and ``setns`` on it fails with EINVAL. Callers that wait
    for another process to make the namespace treat this as "not there yet".
    """


def named_netns_path(name: str) -> str:
    """Where the named namespace ``name`` is mounted (``ip netns``'s place)."""
    return str(NETNS_DIR / name)


def node_netns_path(cluster: str) -> str:
    """The node namespace of cluster ``cluster``: the node agent makes it, the proxy programs it."""
    return named_netns_path(f"{cluster}-node")


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns(CLONE_NEWNET): {os.strerror(err)}")


def _namespace_type(fd: int) -> int | None:
    """The CLONE_NEW* type of the namespace file ``fd``; None for any other file."""
    try:
        return fcntl.ioctl(fd, NS_GET_NSTYPE)
    except OSError:
        return None  # ENOTTY: a plain file, not nsfs


def is_netns(path: str) -> bool:
    """Whether a network namespace is mounted at ``path`` (not for nothing or an empty mount point)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        return _namespace_type(fd) == CLONE_NEWNET
    finally:
        os.close(fd)


def _thread_netns_inode() -> int:
    # /proc/self is the thread-group leader; the namespace being switched is this thread's.
    return os.stat("/proc/thread-self/ns/net").st_ino


@contextlib.contextmanager
def returning_netns() -> Iterator[None]:
    """Put the calling thread back into its current network namespace on exit, whatever happens."""
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        yield
    finally:
        try:
            _setns(original)
        finally:
            os.close(original)


@contextlib.contextmanager
def in_netns(netns_path: str) -> Iterator[None]:
    """Run the block with the calling thread inside the network namespace at ``netns_path``.

    Meant for short, synchronous work: create a socket (listening or connecting) inside,
    leave, and use the socket from anywhere afterwards; a socket stays in the namespace it
    was created in. Never ``await`` inside the block: other coroutines would run in the
    namespace too. Other threads are not affected (the switch is per thread).

    Raises FileNotFoundError if nothing is at ``netns_path`` and :class:`NotANamespace` if
    the file is there but the namespace is not mounted on it.
    """
    with returning_netns():
        target = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            try:
                _setns(target)
            except OSError as e:
                # Told apart only on failure: the check costs a syscall, and in_netns is on
                # every pod's path.
                if e.errno == errno.EINVAL and _namespace_type(target) is None:
                    raise NotANamespace(errno.EINVAL, "not a network namespace (not mounted yet?)", netns_path) from None
                raise
            if _thread_netns_inode() != os.fstat(target).st_ino:
                raise OSError(errno.EINVAL, f"setns did not enter {netns_path}")
        finally:
            os.close(target)
        yield


def socket_in(netns_path: str, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM) -> socket.socket:
    """A non-blocking socket that belongs to the network namespace at ``netns_path``."""
    with in_netns(netns_path):
        sock = socket.socket(family, type)
    sock.setblocking(False)
    return sock


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


async def open_connection_in(
    netns_path: str, host: str, port: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """``asyncio.open_connection`` from inside a namespace; ``host`` is an IP address.

    Probes, port-forward and the API relay use it; wrap it in a timeout as needed.
    """
    sock = socket_in(netns_path, _family(host))
    try:
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock)


async def start_server_in(
    netns_path: str,
    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None] | None],
    host: str,
    port: int,
) -> asyncio.Server:
    """``asyncio.start_server`` listening on ``host:port`` inside a namespace (``host`` is an IP)."""
    sock = socket_in(netns_path, _family(host))
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(socket.SOMAXCONN)
    except BaseException:
        sock.close()
        raise
    return await asyncio.start_server(handler, sock=sock)


# --- named namespaces -----------------------------------------------------------------------


def create_netns(name: str) -> None:
    """Create the named namespace (visible in ``ip netns list``) without leaving this thread in it."""
    with returning_netns():
        if _libc.unshare(CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")
        try:
            # pyroute2.netns.create would fork a child to unshare; unsharing this thread is
            # cheaper and safe in a threaded process. "thread-self" makes pyroute2 bind-mount
            # /proc/thread-self/ns/net, the namespace just made, not the main thread's.
            pyroute2_netns.attach(name, "thread-self")
        except FileExistsError:
            raise  # someone else's namespace of that name: not ours to remove
        except BaseException:
            remove_netns(name)
            raise


def remove_netns(name: str) -> None:
    """Unmount and remove the named namespace (idempotent); it ends once nothing else holds it."""
    path = NETNS_DIR / name
    if not path.exists():
        return
    try:
        pyroute2_netns.remove(name)
    except FileNotFoundError:
        pass
