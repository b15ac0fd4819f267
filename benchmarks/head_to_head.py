"""Head-to-head of pose recipes: the same code as ``posediff bench`` (see ``posediff.bench``).

    python benchmarks/head_to_head.py --preset quick --out runs/bench/quick
"""

import sys

from posediff.bench import main
from posediff.cli import run

if __name__ == "__main__":
    sys.exit(run(main))
