"""``python -m rectifiers.bench``: the benchmark's command line (:mod:`rectifiers.cli.bench`)."""

import sys

from rectifiers.cli.bench import main

sys.exit(main())
