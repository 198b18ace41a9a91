"""``python -m kubelite.images.agnhost``: the agnhost image's entrypoint."""

import sys

from kubelite.images.agnhost import main

sys.exit(main(sys.argv[1:]))
