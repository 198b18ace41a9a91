"""``python -m kubelite.dns``: the cluster DNS server process (what image ``kubelite/dns`` runs).

In a pod it needs no flags: in-cluster credentials, zone cluster.local, port 53, upstreams
from /etc/resolv.conf (the pod uses dnsPolicy Default, so that is the node's resolver).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from kubelite.dns.server import Options, run


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m kubelite.dns", description="kubelite cluster DNS (CoreDNS's counterpart)")
    p.add_argument("--kubeconfig", help="kubeconfig to use instead of the in-cluster service account")
    p.add_argument("--zone", default="cluster.local", help="cluster domain (default: cluster.local)")
    p.add_argument("--listen", default="0.0.0.0:53", help="UDP and TCP address (default: 0.0.0.0:53)")
    p.add_argument("--upstream", action="append", default=[], metavar="IP[:PORT]",
                   help="resolver for names outside the zone (repeatable; default: from --resolv-conf)")
    p.add_argument("--resolv-conf", default="/etc/resolv.conf", help="where to find upstreams by default")
    p.add_argument("--ttl", type=int, default=5, help="TTL of cluster records (default: 5, CoreDNS's)")
    p.add_argument("--pods", choices=("insecure", "verified", "disabled"), default="insecure",
                   help="a-b-c-d.<ns>.pod records: for any IP, only for existing pods, or none")
    p.add_argument("--metrics", default=":9153", help="Prometheus /metrics address ('' disables)")
    p.add_argument("--health", default=":8080", help="/health address ('' disables)")
    p.add_argument("--ready", default=":8181", help="/ready address ('' disables)")
    p.add_argument("--lameduck", type=float, default=5.0, help="seconds to keep serving after SIGTERM")
    p.add_argument("--upstream-timeout", type=float, default=1.8, help="give up on upstreams (SERVFAIL) after this")
    p.add_argument("-v", "--verbose", action="count", default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose > 1 else logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s dns %(levelname)s %(message)s", stream=sys.stderr)
    opts = Options(kubeconfig=args.kubeconfig, zone=args.zone, listen=args.listen, upstreams=args.upstream,
                   resolv_conf=args.resolv_conf, ttl=args.ttl, pods=args.pods, metrics=args.metrics,
                   health=args.health, ready=args.ready, lameduck=args.lameduck, timeout=args.upstream_timeout)

    def ready(port: int) -> None:
        print(f"kubelite dns ready on port {port}", flush=True)

    try:
        import uvloop
        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        runner.run(run(opts, on_ready=ready))
    return 0


if __name__ == "__main__":
    sys.exit(main())
