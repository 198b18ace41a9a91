"""``python -m kubelite.proxy``: the service proxy on its own, in the foreground.

The same options as ``kubelite proxy`` (``proxier.add_arguments``) and the same run: until
SIGINT or SIGTERM, leaving the table in place. It stays within the proxy's own package, as
``python -m kubelite.dns`` does: the ``kubelite`` command (``kubelite.cli``) composes the
components and may import them, never the other way round (``lint-imports``). What only a
component started by ``kubelite up`` needs (ending with its parent, waiting for the API
server it starts meanwhile) stays with ``kubelite proxy``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from kubelite.proxy import proxier


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m kubelite.proxy",
                                description="kubelite service proxy (kube-proxy's counterpart, nftables mode)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)")
    proxier.add_arguments(p)
    return p


async def _until_signalled(args: argparse.Namespace) -> int:
    task = asyncio.ensure_future(proxier.main(args))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING - 10 * min(args.verbose, 2),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("pyroute2").setLevel(logging.WARNING)  # its debug output floods -vv
    try:
        import uvloop
        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        return runner.run(_until_signalled(args))


if __name__ == "__main__":
    sys.exit(main())
