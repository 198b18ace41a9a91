"""``python -m kubelite`` is the same front door as the ``kubelite`` console script."""

from kubelite.cli.main import main

raise SystemExit(main())
