"""``python -m posediff ...`` (and ``torchrun -m posediff train ...``)."""

import sys

from .cli import main

sys.exit(main())
