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
import urllib.error
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
    pods: collections.Counter[str] = collections.Counter()
    failed = 0
    for _ in range(args.n):
        try:
            with urllib.request.urlopen(args.url, timeout=10) as response:
                body = response.read()
        except urllib.error.HTTPError as e:
            body = e.read()
            print(f"HTTP {e.code}: {body.decode(errors='replace').strip()}", file=sys.stderr)
            failed += 1
            continue
        except OSError as e:
            print(f"{args.url}: {e}", file=sys.stderr)
            failed += 1
            continue
        if args.n == 1:
            sys.stdout.write(body.decode(errors="replace"))
        pods[answered_by(body)] += 1
    if args.n > 1:
        for pod, count in sorted(pods.items()):
            print(f"{pod}: {count}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
