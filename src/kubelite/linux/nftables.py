"""libnftables from Python: nft's own text syntax, run as transactions inside a network namespace.

The service proxy (``kubelite.proxy``) and the NetworkPolicy enforcement
(``kubelite.networkpolicy``) both program tables in the node's namespace. They drive
libnftables, the library the ``nft`` tool is a front end to, through ctypes: the same text
``nft -f -`` would read, without a process start per sync. Both need the same few calls, and
neither may import the other (the components are independent), so the wrapper lives here.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
from concurrent.futures import ThreadPoolExecutor

from kubelite.linux.netns import in_netns


class NFTError(Exception):
    """nft refused a transaction; the message is nft's own error text."""


class NFTables:
    """libnftables, run on one worker thread inside the namespace at ``netns_path``."""

    def __init__(self, netns_path: str) -> None:
        self.netns_path = netns_path
        path = ctypes.util.find_library("nftables") or "libnftables.so.1"
        lib = ctypes.CDLL(path, use_errno=True)
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        self._lib = lib
        self._libc = ctypes.CDLL(None)
        self._ctx: int | None = None
        # One thread: libnftables contexts are not thread-safe, and transactions stay ordered.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="nft")

    _JSON = 1 << 4  # NFT_CTX_OUTPUT_JSON
    _TRIM_AFTER = 1 << 20

    def _run(self, text: str, json: bool) -> str:
        # The netlink socket is opened on first use: inside the node namespace, where every
        # call is made, so nothing can reach the host's tables.
        with in_netns(self.netns_path):
            lib = self._lib
            if self._ctx is None:
                self._ctx = lib.nft_ctx_new(0)
                lib.nft_ctx_buffer_output(self._ctx)
                lib.nft_ctx_buffer_error(self._ctx)
            lib.nft_ctx_output_set_flags(self._ctx, self._JSON if json else 0)
            rc = lib.nft_run_cmd_from_buffer(self._ctx, text.encode())
            out = (lib.nft_ctx_get_output_buffer(self._ctx) or b"").decode()
            err = (lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode()
        if len(text) > self._TRIM_AFTER:
            # Parsing a full sync of 10,000 Services takes ~250 MB that libnftables frees but
            # malloc keeps; give it back, or the proxy would hold its peak for good.
            self._libc.malloc_trim(0)
        if rc != 0:
            raise NFTError(err.strip() or f"nft failed ({rc})")
        return out

    async def run(self, text: str, *, json: bool = False) -> str:
        """Run nft commands (``nft -f`` syntax) as one transaction; their output (JSON if asked)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._run, text, json)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        if self._ctx is not None:
            self._lib.nft_ctx_free(self._ctx)
            self._ctx = None
