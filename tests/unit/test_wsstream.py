"""Channel protocol rules, and the agent's CRI log rendering that `kubectl logs` shows."""

from __future__ import annotations

import datetime as dt
import pathlib
from typing import Any

import orjson
from aiohttp import web

from kubelite.api import timeutil
from kubelite.api.errors import StatusError
from kubelite.apiserver import httpproxy, proxy, wsstream
from kubelite.node import streaming


def test_negotiation_follows_the_client_order() -> None:
    assert wsstream.negotiate(["v5.channel.k8s.io"]) == wsstream.V5
    assert wsstream.negotiate(["base64.channel.k8s.io", "v4.channel.k8s.io", "v5.channel.k8s.io"]) == wsstream.V4
    assert wsstream.negotiate(["nope"]) is None
    assert wsstream.offered_protocols(["v4.channel.k8s.io, v3.channel.k8s.io", "channel.k8s.io"]) == [
        "v4.channel.k8s.io", "v3.channel.k8s.io", "channel.k8s.io"]
    assert [wsstream.version(p) for p in (None, "", wsstream.V1, wsstream.V2, wsstream.V4, wsstream.V5)] == [
        1, 1, 1, 2, 4, 5]


def test_messages() -> None:
    assert wsstream.message(wsstream.STDOUT, b"hi") == b"\x01hi"
    assert wsstream.split(b"\x03{}") == (3, b"{}")


def test_error_channel_by_version() -> None:
    exit3 = streaming.exit_status(3)
    assert orjson.loads(wsstream.error_payload(exit3, 4)) == exit3
    assert wsstream.error_payload(exit3, 3) == b"command terminated with non-zero exit code: command terminated with exit code 3"
    assert wsstream.error_payload(streaming.success_status(), 2) == b""
    assert orjson.loads(wsstream.error_payload(streaming.success_status(), 5)) == {"metadata": {}, "status": "Success"}


def test_exit_status_is_what_client_go_decodes() -> None:
    # client-go's errorDecoderV4 wants reason NonZeroExitCode and a cause of type ExitCode.
    st = streaming.exit_status(137)
    assert st["status"] == "Failure" and st["reason"] == "NonZeroExitCode"
    assert st["details"]["causes"] == [{"reason": "ExitCode", "message": "137"}]


def test_json_stream_decodes_go_encoder_output_in_pieces() -> None:
    d = wsstream.JSONStream()
    assert d.feed(b'{"Width":80,"Height":24}\n{"Wid') == [{"Width": 80, "Height": 24}]
    assert d.feed(b'th":100,"Height":40}\n') == [{"Width": 100, "Height": 40}]
    assert d.feed(b"") == []


# ---------------------------------------------------------------------------- API server checks


def pod(*names: str, init: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"metadata": {"name": "web"}, "spec": {"containers": [{"name": n} for n in names],
                                                  "initContainers": [{"name": n} for n in init]}}


def status_of(fn: object, *args: object) -> tuple[int, str]:
    try:
        fn(*args)  # type: ignore[operator]
    except StatusError as e:
        return e.code, e.message
    raise AssertionError("no error")


def test_container_validation_texts() -> None:
    assert proxy.validate_container(pod("app"), "") == "app"
    assert proxy.validate_container(pod("app", init=("setup",)), "setup") == "setup"
    assert status_of(proxy.validate_container, pod("a", "b"), "") == (
        400, "a container name must be specified for pod web, choose one of: [a b]")
    assert status_of(proxy.validate_container, pod("a"), "c") == (400, "container c is not valid for pod web")


def test_log_options_validation() -> None:
    q = {"follow": "true", "tailLines": "10", "sinceSeconds": "5", "timestamps": "false"}
    assert proxy.log_params(q, "web") == {"follow": "true", "tailLines": "10", "sinceSeconds": "5"}
    assert status_of(proxy.log_params, {"tailLines": "-1"}, "web") == (
        422, 'PodLogOptions "web" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0')
    assert status_of(proxy.log_params, {"limitBytes": "0"}, "web") == (
        422, 'PodLogOptions "web" is invalid: limitBytes: Invalid value: 0: must be greater than 0')
    code, message = status_of(proxy.log_params, {"sinceSeconds": "1", "sinceTime": "2024-01-01T00:00:00Z"}, "web")
    assert code == 422 and "at most one of `sinceTime` or `sinceSeconds` may be specified" in message


# ---------------------------------------------------------------------------- CRI logs (node side)


def test_cri_lines() -> None:
    e = streaming.parse_cri_line(b"2024-01-01T00:00:00.123000000Z stderr F boom\n")
    assert e == streaming.LogEntry("2024-01-01T00:00:00.123000000Z", "stderr", False, b"boom")
    assert streaming.render(e, False) == b"boom\n"
    assert streaming.render(e, True) == b"2024-01-01T00:00:00.123Z boom\n"  # Go's RFC3339Nano trims zeros
    p = streaming.parse_cri_line(b"2024-01-01T00:00:00Z stdout P half")
    assert p is not None and p.partial and streaming.render(p, False) == b"half"
    assert streaming.parse_cri_line(b"2024-01-01T00:00:00Z stdout F \n") == streaming.LogEntry(
        "2024-01-01T00:00:00Z", "stdout", False, b"")
    assert streaming.parse_cri_line(b"not a log line\n") is None
    assert timeutil.trim_nano("2024-01-01T00:00:00.000000000Z") == "2024-01-01T00:00:00Z"


def test_timestamps() -> None:
    assert timeutil.parse_time("2024-01-01T00:00:01.5Z") == dt.datetime(2024, 1, 1, 0, 0, 1, 500000, dt.UTC)
    assert timeutil.parse_time("2024-01-01T02:00:00+02:00") == dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    assert timeutil.parse_time("yesterday") is None


def test_tail_offset() -> None:
    data = b"a\nb\nc\n"
    assert data[streaming.tail_offset(data, 2):] == b"b\nc\n"
    assert data[streaming.tail_offset(data, 10):] == data
    assert data[streaming.tail_offset(data, 0):] == b""


async def _collect(path: pathlib.Path, opts: streaming.LogOptions) -> bytes:
    async def alive() -> bool:
        return False

    return b"".join([chunk async for chunk in streaming.stream_log(path, opts, alive)])


async def test_stream_log_options(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "0.log"
    path.write_bytes(b"".join(
        f"2024-01-01T00:00:0{i}Z {'stdout' if i % 2 else 'stderr'} F line {i}\n".encode() for i in range(5)
    ) + b"2024-01-01T00:00:09Z stdout F unterminated")
    assert await _collect(path, streaming.LogOptions()) == b"".join(f"line {i}\n".encode() for i in range(5))
    assert await _collect(path, streaming.LogOptions(tail_lines=2)) == b"line 3\nline 4\n"
    since = dt.datetime(2024, 1, 1, 0, 0, 3, tzinfo=dt.UTC)
    assert await _collect(path, streaming.LogOptions(since=since)) == b"line 3\nline 4\n"
    assert await _collect(path, streaming.LogOptions(limit_bytes=9)) == b"line 0\nli"
    assert await _collect(path, streaming.LogOptions(timestamps=True, tail_lines=1)) == b"2024-01-01T00:00:04Z line 4\n"


def test_log_options_from_query() -> None:
    now = dt.datetime(2024, 1, 1, 1, tzinfo=dt.UTC)
    opts = streaming.LogOptions.from_query({"follow": "true", "sinceSeconds": "60", "tailLines": "3"}, now)
    assert opts == streaming.LogOptions(follow=True, tail_lines=3, since=dt.datetime(2024, 1, 1, 0, 59, tzinfo=dt.UTC))


def test_frames_in_either_type_and_the_base64_variants() -> None:
    # Text frames carry the same bytes as binary ones (the official Python client's write_stdin(str)).
    assert wsstream.read_frame("\x00hello\n", False) == (0, b"hello\n")
    assert wsstream.read_frame(b"\x00hello\n", False) == (0, b"hello\n")
    assert wsstream.read_frame("", False) is None
    # base64: an ASCII digit for the channel, base64 data, in text (or binary) frames.
    assert wsstream.read_frame("0aGk=", True) == (0, b"hi")
    assert wsstream.read_frame(b"4eyJXaWR0aCI6MX0=", True) == (4, b'{"Width":1}')
    assert wsstream.read_frame("0not base64!", True) is None
    assert wsstream.read_frame(b"\xff\x00", False) == (wsstream.CLOSE, b"\x00")  # v5's CLOSE
    assert wsstream.write_frame(1, b"hi", True) == "1aGk="
    assert wsstream.write_frame(1, b"hi", False) == b"\x01hi"
    assert [wsstream.version(p) for p in (wsstream.V1_BASE64, wsstream.V4_BASE64)] == [1, 4]
    assert [wsstream.is_base64(p) for p in (wsstream.V1_BASE64, wsstream.V4_BASE64, wsstream.V4, None)] == [
        True, True, False, False]
    # SPDY has no base64 variants: only websockets negotiate them.
    assert wsstream.negotiate([wsstream.V4_BASE64]) is None


def test_websocket_port_forward_ports() -> None:
    assert proxy._websocket_ports(["80,8080", "9"]) == [80, 8080, 9]
    for bad, text in (([], 'query parameter "port" is required'), (["0"], 'port "0" must be > 0')):
        try:
            proxy._websocket_ports(bad)
        except web.HTTPBadRequest as e:
            assert e.text == text
        else:
            raise AssertionError(bad)
    try:
        proxy._websocket_ports(["http"])
    except StatusError as e:
        assert (e.code, e.message) == (400, 'strconv.ParseInt: parsing "http": invalid syntax')
    else:
        raise AssertionError("http")


def test_proxy_names_paths_and_redirects() -> None:
    assert httpproxy.split_scheme_name_port("web") == ("", "web", "")
    assert httpproxy.split_scheme_name_port("web:http") == ("", "web", "http")
    assert httpproxy.split_scheme_name_port("https:web:8443") == ("https", "web", "8443")
    assert httpproxy.split_scheme_name_port("ftp:web:21") is None
    assert httpproxy.split_scheme_name_port(":80") is None
    assert httpproxy.split_scheme_name_port("a:b:c:d") is None
    svc = "/api/v1/namespaces/ns/services/web:80/proxy"
    assert httpproxy.proxy_path(svc, "") == (svc, "")  # answered with a redirect to .../proxy/
    assert httpproxy.proxy_path(svc + "/", "") == (svc, "/")
    assert httpproxy.proxy_path(svc + "/a/b%20c/", "") == (svc, "/a/b%20c/")
    assert httpproxy.proxy_path(svc, "/from/query") == (svc, "/from/query")
    # A redirect to the backend goes through the proxy again; one elsewhere is left alone.
    assert httpproxy.rewrite_location("/login?x=1", "10.0.0.5:80", "127.0.0.1:6443", svc) == f"{svc}/login?x=1"
    assert httpproxy.rewrite_location("http://10.0.0.5:80/a", "10.0.0.5:80", "127.0.0.1:6443", svc) == f"{svc}/a"
    assert httpproxy.rewrite_location(f"{svc}/b", "10.0.0.5:80", "h:1", svc) == f"{svc}/b"
    assert httpproxy.rewrite_location("https://example.com/a", "10.0.0.5:80", "h:1", svc) == "https://example.com/a"
    assert httpproxy.rewrite_location("relative", "10.0.0.5:80", "h:1", svc) == "relative"


def test_proxied_html_links_go_through_the_proxy() -> None:
    svc = "/api/v1/namespaces/ns/services/web:80/proxy"

    def rewrite(url: str) -> str:
        return httpproxy.rewrite_location(url, "10.0.0.5:80", "127.0.0.1:6443", svc)

    page = (b'<html><head><link rel="stylesheet" href="/static/app.css"><script src=\'/app.js\'></script></head>'
            b'<body><a HREF=/about class="x">About</a> <a href="relative">r</a> <a href="https://example.com/">e</a>'
            b'<img alt="/not-a-url" src="/logo.png"/><p title="/not-either">\xc3\xa9</p></body></html>')
    assert httpproxy.rewrite_html(page, rewrite) == (
        b'<html><head><link rel="stylesheet" href="' + svc.encode() + b'/static/app.css"><script src=\''
        + svc.encode() + b'/app.js\'></script></head><body><a HREF=' + svc.encode() + b'/about class="x">About</a> '
        b'<a href="relative">r</a> <a href="https://example.com/">e</a><img alt="/not-a-url" src="'
        + svc.encode() + b'/logo.png"/><p title="/not-either">\xc3\xa9</p></body></html>')
