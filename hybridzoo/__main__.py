"""``python -m hybridzoo``: the command line (also the target of ``torchrun -m hybridzoo``)."""

import sys

from hybridzoo.cli import main

if __name__ == "__main__":
    sys.exit(main())
