"""``python /app/fetch.py [-n N] URL``: what ``curl`` would be, in an image that has only Python.

Once, it prints the answer. With ``-n N`` it asks N times, each on a new connection (so each
request is balanced afresh by the Service), and prints how many answers came from each
backend pod: requests to a Service spread over its pods.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import urllib.request


def answered_by(body: bytes) -> str:
    """The pod that answered: the backend's JSON ``pod`` field, else the body's first line."""
    try:
        return str(json.loads(body)["pod"])
    except (ValueError, KeyError, TypeError):
        return body.decode(errors="replace").strip().split("\n")[0]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=1, help="how many requests")
    parser.add_argument("url")
    args = parser.parse_args(argv)
    if args.n == 1:
        with urllib.request.urlopen(args.url, timeout=10) as response:
            sys.stdout.write(response.read().decode(errors="replace"))
        return 0
    pods: collections.Counter[str] = collections.Counter()
    for _ in range(args.n):
        with urllib.request.urlopen(args.url, timeout=10) as response:
            pods[answered_by(response.read())] += 1
    for pod, count in sorted(pods.items()):
        print(f"{pod}: {count}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
