"""``python -m edgectl``: the same as the ``edgectl`` command."""

import sys

from edgectl.cli import main

sys.exit(main())
