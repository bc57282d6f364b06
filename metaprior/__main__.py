"""`python -m metaprior ...` (and `torchrun -m metaprior train ...`): the `metaprior` command."""

from __future__ import annotations

import sys

try:
    from metaprior.cli import main
except KeyboardInterrupt:  # Ctrl-C during the imports: exit as an interrupt, no traceback
    print("metaprior: interrupted", file=sys.stderr)
    sys.exit(130)

if __name__ == "__main__":
    sys.exit(main())
