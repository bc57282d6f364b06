"""`python -m metaprior ...` (and `torchrun -m metaprior train ...`): the `metaprior` command."""

from __future__ import annotations

import sys

from metaprior.cli import main

if __name__ == "__main__":
    sys.exit(main())
