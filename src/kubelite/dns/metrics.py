"""CoreDNS's observability surface: Prometheus metrics on :9153, /health on :8080, /ready on :8181.

Metric names, labels and histogram buckets are CoreDNS's own (``coredns_dns_requests_total``,
``coredns_dns_responses_total``, ``coredns_dns_request_duration_seconds``,
``coredns_cache_hits_total``...), so dashboards and alerts written for CoreDNS read them
unchanged. The text format is written by hand: the counters are plain dict increments on
the query path, much cheaper than a client library's locked metric objects, and the server
is single-threaded anyway.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

SERVER = "dns://:53"
ZONE = "."
# prometheus.ExponentialBuckets(0.00025, 2, 16), as CoreDNS's request duration histogram.
BUCKETS = tuple(0.00025 * 2**i for i in range(16))
TYPES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA", 33: "SRV",
         43: "DS", 46: "RRSIG", 47: "NSEC", 48: "DNSKEY", 50: "NSEC3", 65: "HTTPS", 251: "IXFR", 252: "AXFR",
         255: "ANY"}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED", 16: "BADVERS"}


@dataclass
class _Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds

    def lines(self, name: str, labels: str) -> list[str]:
        out, running = [], 0
        for le, n in zip(BUCKETS, self.counts, strict=False):
            running += n
            out.append(f'{name}_bucket{{{labels},le="{le:g}"}} {running}')
        running += self.counts[-1]
        out.append(f'{name}_bucket{{{labels},le="+Inf"}} {running}')
        out.append(f"{name}_sum{{{labels}}} {self.total!r}")
        out.append(f"{name}_count{{{labels}}} {running}")
        return out


class Metrics:
    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str], int] = {}  # (proto, family, type)
        self.responses: dict[int, int] = {}  # rcode
        self.durations: dict[str, _Histogram] = {}  # per type
        self.cache_hits = {"success": 0, "denial": 0}
        self.cache_misses = 0
        self.cache_entries: Callable[[], int] = lambda: 0
        self.forward_requests: dict[str, int] = {}
        self.forward_responses: dict[tuple[str, str], int] = {}
        self.forward_durations: dict[str, _Histogram] = {}
        self.forward_failures: dict[str, int] = {}
        self.dropped = 0

    def observe(self, proto: str, family: str, qtype: int, rcode: int, seconds: float) -> None:
        t = TYPES.get(qtype, "other")
        k = (proto, family, t)
        self.requests[k] = self.requests.get(k, 0) + 1
        self.responses[rcode] = self.responses.get(rcode, 0) + 1
        h = self.durations.get(t)
        if h is None:
            h = self.durations[t] = _Histogram()
        h.observe(seconds)

    def cache_hit(self, denial: bool) -> None:
        self.cache_hits["denial" if denial else "success"] += 1

    def forward_request(self, to: str) -> None:
        self.forward_requests[to] = self.forward_requests.get(to, 0) + 1

    def forward_response(self, to: str, rcode: str, seconds: float) -> None:
        k = (to, rcode)
        self.forward_responses[k] = self.forward_responses.get(k, 0) + 1
        h = self.forward_durations.get(to)
        if h is None:
            h = self.forward_durations[to] = _Histogram()
        h.observe(seconds)

    def forward_failure(self, to: str) -> None:
        self.forward_failures[to] = self.forward_failures.get(to, 0) + 1

    def render(self) -> str:
        base = f'server="{SERVER}",zone="{ZONE}",view=""'
        out: list[str] = []

        def header(name: str, kind: str, text: str) -> None:
            out.append(f"# HELP {name} {text}")
            out.append(f"# TYPE {name} {kind}")

        header("coredns_dns_requests_total", "counter", "Counter of DNS requests made per zone, protocol and family.")
        for (proto, family, t), n in sorted(self.requests.items()):
            out.append(f'coredns_dns_requests_total{{{base},proto="{proto}",family="{family}",type="{t}"}} {n}')
        header("coredns_dns_responses_total", "counter", "Counter of response status codes.")
        for rcode, n in sorted(self.responses.items()):
            rc = RCODES.get(rcode, str(rcode))
            out.append(f'coredns_dns_responses_total{{{base},rcode="{rc}",plugin=""}} {n}')
        header("coredns_dns_request_duration_seconds", "histogram",
               "Histogram of the time (in seconds) each request took per zone.")
        for t, h in sorted(self.durations.items()):
            out += h.lines("coredns_dns_request_duration_seconds", f'{base},type="{t}"')
        cache = 'server="dns://:53",view="",zone="."'
        header("coredns_cache_entries", "gauge", "The number of elements in the cache.")
        out.append(f'coredns_cache_entries{{{cache},type="success"}} {self.cache_entries()}')
        header("coredns_cache_hits_total", "counter", "The count of cache hits.")
        for kind, n in sorted(self.cache_hits.items()):
            out.append(f'coredns_cache_hits_total{{{cache},type="{kind}"}} {n}')
        header("coredns_cache_misses_total", "counter", "The count of cache misses.")
        out.append(f"coredns_cache_misses_total{{{cache}}} {self.cache_misses}")
        header("coredns_forward_requests_total", "counter", "Counter of requests made per upstream.")
        for to, n in sorted(self.forward_requests.items()):
            out.append(f'coredns_forward_requests_total{{to="{to}"}} {n}')
        header("coredns_forward_responses_total", "counter", "Counter of responses received per upstream.")
        for (to, rc_name), n in sorted(self.forward_responses.items()):
            out.append(f'coredns_forward_responses_total{{rcode="{rc_name}",to="{to}"}} {n}')
        header("coredns_proxy_request_duration_seconds", "histogram",
               "Histogram of the time each request took.")
        for to, h in sorted(self.forward_durations.items()):
            out += h.lines("coredns_proxy_request_duration_seconds", f'proxy_name="forward",to="{to}"')
        header("coredns_forward_healthcheck_failures_total", "counter",
               "Counter of the number of failed healthchecks (here: failed exchanges).")
        for to, n in sorted(self.forward_failures.items()):
            out.append(f'coredns_forward_healthcheck_failures_total{{to="{to}"}} {n}')
        header("kubelite_dns_dropped_packets_total", "counter", "Packets dropped without an answer.")
        out.append(f"kubelite_dns_dropped_packets_total {self.dropped}")
        return "\n".join(out) + "\n"


def parse_addr(text: str, default_port: int) -> tuple[str | None, int]:
    """``:9153`` (all interfaces), ``127.0.0.1:0``, ``[::1]:8080`` → (host or None, port)."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest.removeprefix(":") or default_port)
    host, sep, port = text.rpartition(":")
    if not sep:
        return text or None, default_port
    return host or None, int(port or default_port)


async def serve_http(
    metrics: Metrics, ready: Callable[[], bool], *, metrics_addr: str = ":9153", health_addr: str = ":8080",
    ready_addr: str = ":8181",
) -> tuple[list[web.AppRunner], dict[str, int]]:
    """Start the three listeners (an empty address disables one); returns runners and bound ports."""

    async def metrics_handler(_: web.Request) -> web.Response:
        return web.Response(text=metrics.render(), content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})

    async def health_handler(_: web.Request) -> web.Response:
        return web.Response(text="OK")  # the process answers: that is all /health says (CoreDNS)

    async def ready_handler(_: web.Request) -> web.Response:
        # CoreDNS's ready plugin lists the plugins that are not ready yet.
        return web.Response(text="OK") if ready() else web.Response(status=503, text="kubernetes")

    runners: list[web.AppRunner] = []
    ports: dict[str, int] = {}
    for name, addr, path, handler, default in (
        ("metrics", metrics_addr, "/metrics", metrics_handler, 9153),
        ("health", health_addr, "/health", health_handler, 8080),
        ("ready", ready_addr, "/ready", ready_handler, 8181),
    ):
        if not addr:
            continue
        app = web.Application()
        app.router.add_get(path, handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        host, port = parse_addr(addr, default)
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        runners.append(runner)
        server = site._server
        socks = getattr(server, "sockets", None) or ()
        ports[name] = socks[0].getsockname()[1] if socks else port
    return runners, ports
