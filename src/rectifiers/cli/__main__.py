"""``python -m rectifiers.cli`` (and ``torchrun ... -m rectifiers.cli compare``)."""

import sys

from rectifiers.cli import main

sys.exit(main())
