"""``python -m kubelite.node``: the node agent on its own, without the service proxy.

For running and restarting an agent by hand next to ``kubelite up --no-agent`` (the e2e
tests and the pod benchmark do): the flags are those of ``kubelite agent``, with ``-v`` /
``-vv`` for its log. ``kubelite up`` runs ``kubelite agent --with-proxy`` instead, which adds
what a supervised component needs (dying with ``up``, waiting for its API server) and the
proxy; that front door lives in :mod:`kubelite.cli`, which the node must not import.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any

from kubelite.node import agent


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m kubelite.node",
                                description="kubelite node agent (the kubelet's counterpart)")
    agent.add_arguments(p)
    p.add_argument("-v", "--verbose", action="count", default=0, help="-v: info, -vv: debug")
    return p


def _loop_factory() -> Any:
    """uvloop where installed, as ``kubelite agent`` runs."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def _run(args: argparse.Namespace) -> int:
    # SIGTERM and SIGINT cancel the agent, whose clean-up stops its probes, relays and
    # streaming server; containers keep running (their shims outlive the agent).
    task = asyncio.ensure_future(agent.main(args))
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
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pyroute2").setLevel(logging.WARNING)  # its debug output floods -vv
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(_run(args))


if __name__ == "__main__":
    sys.exit(main())
