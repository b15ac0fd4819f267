"""``python -m posediff ...`` (and ``torchrun -m posediff train ...``)."""

import sys

from .cli import run

sys.exit(run())
