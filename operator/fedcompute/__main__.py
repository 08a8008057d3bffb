"""Allow ``python -m fedcompute``."""

import sys

from fedcompute.cli import main

sys.exit(main())
