"""``agnhost dns-suffix``, ``dns-server-list`` and ``etc-hosts``: print the pod's resolver setup."""

from __future__ import annotations

import sys

from kubelite.images.agnhost import common


def _resolv_conf(keyword: str) -> list[str]:
    values: list[str] = []
    with open("/etc/resolv.conf") as f:
        for line in f:
            fields = line.split()
            if fields and fields[0] == keyword:
                values.extend(fields[1:])
    return values


def main(command: str, args: list[str]) -> None:
    _, positional = common.parse_flags(command, [], args)
    if positional:
        common.usage_error(command, [], f"accepts at most 0 arg(s), received {len(positional)}")
    if command == "dns-suffix":
        print(",".join(_resolv_conf("search")))
    elif command == "dns-server-list":
        print(",".join(_resolv_conf("nameserver")))
    else:
        with open("/etc/hosts") as f:
            sys.stdout.write(f.read() + "\n")
