"""`python -m kubetune_trainer [preflight] --config FILE` (see `cli`)."""

import sys

from .cli import entry

sys.exit(entry())
