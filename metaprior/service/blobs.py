"""A prior as the bytes of its file: how priors travel over HTTP and sit in the store."""

from __future__ import annotations

import os
import tempfile

from metaprior.prior import MetaPrior


def prior_to_bytes(prior: MetaPrior) -> bytes:
    """A prior's file, as bytes."""
    with tempfile.TemporaryDirectory(prefix="metaprior-") as tmp:
        path = os.path.join(tmp, "upload.prior")
        prior.save(path)
        with open(path, "rb") as f:
            return f.read()


def prior_from_bytes(data: bytes) -> MetaPrior:
    """The prior of a file's bytes; anything else is a `PriorFileError` (no code is run)."""
    with tempfile.TemporaryDirectory(prefix="metaprior-") as tmp:
        path = os.path.join(tmp, "upload.prior")
        with open(path, "wb") as f:
            f.write(data)
        return MetaPrior.load(path)
