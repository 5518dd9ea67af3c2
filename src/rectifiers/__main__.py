"""``python -m rectifiers``: the command line (see :mod:`rectifiers.cli`)."""

import sys

from rectifiers.cli import main

sys.exit(main())
