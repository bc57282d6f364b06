"""`python -m metaprior ...` (and `torchrun -m metaprior train ...`): the `metaprior` command."""

from __future__ import annotations

import os
import sys

EXIT_INTERRUPTED = 130  # the shell's convention for SIGINT


def exit_interrupted() -> None:
    """Leave with status 130 at once.

    A Ctrl-C that lands inside an extension's own `PyRun_*` call during the torch imports sets
    CPython's "unhandled KeyboardInterrupt" flag even though we catch the exception, and then a
    normal exit re-raises SIGINT on the way out (status -2 instead of 130). Nothing is left to
    clean up at this point (checkpoints are already on disk), so skip the interpreter's teardown.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_INTERRUPTED)


def run() -> None:
    """Run the `metaprior` command and exit with its status (the console script's entry)."""
    try:
        from metaprior.cli import main
    except KeyboardInterrupt:  # Ctrl-C during the imports: exit as an interrupt, no traceback
        print("metaprior: interrupted", file=sys.stderr)
        exit_interrupted()
    status = main()
    if status == EXIT_INTERRUPTED:
        exit_interrupted()
    sys.exit(status)


if __name__ == "__main__":
    run()
