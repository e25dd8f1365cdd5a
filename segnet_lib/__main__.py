"""``python -m segnet_lib ...``: see :mod:`segnet_lib.cli`."""
import sys

from segnet_lib.cli import main

sys.exit(main())
