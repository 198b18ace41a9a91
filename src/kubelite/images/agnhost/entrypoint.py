"""``agnhost entrypoint-tester``: print every argument the process was started with, then exit 0.

Kubernetes' tests of how ``command``/``args`` override an image's ENTRYPOINT/CMD compare this
line, Go's ``fmt.Printf("%v\\n", os.Args)``: ``[/agnhost-2 entrypoint-tester override arguments]``.
argv[0] is the path the container ran (``/agnhost`` or its alias ``/agnhost-2``), which the
catalog passes down as ``--argv0`` because here the program is a Python module.
"""

from __future__ import annotations

import sys


def main(argv0: str, args: list[str]) -> None:
    sys.stdout.write("[" + " ".join([argv0, "entrypoint-tester", *args]) + "]\n")
    sys.stdout.flush()
    raise SystemExit(0)
