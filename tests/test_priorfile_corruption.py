"""Corrupted prior files: every defect is a `PriorFileError`, never a prior that predicts wrong.

The checksum covers the header as well as the tensors, and loading validates every header field
and every weight's shape and finiteness, so a file that loads predicts exactly what was saved.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as st_save

from metaprior.config import ReptileConfig
from metaprior.errors import PriorFileError
from metaprior.nets import init_params
from metaprior.prior import MetaPrior
from metaprior.priorfile import FORMAT_NAME, checksum, write_prior_file
from metaprior.shift_prior import ShiftPrior
from metaprior.tasks.family import make_generator

GRID = torch.linspace(-4.0, 4.0, 9, dtype=torch.float64).unsqueeze(-1)


def small_prior(dim: int = 1) -> MetaPrior:
    """A tiny untrained prior (hidden=(4,)) with a shift prior, so its file is a few kB."""
    cfg = ReptileConfig(hidden=(4,), outer_steps=3)
    params = init_params(dim, cfg.hidden, make_generator(0, "corruption"))
    shift = ShiftPrior(mean=[0.01] * dim, cov=[[0.003 if i == j else 0.0 for j in range(dim)]
                                              for i in range(dim)],
                       resid_sd=0.05, scale_sd=0.1, offset_sd=0.2, n_tasks=8)
    bounds = [[-4.0] * dim, [4.0] * dim]
    return MetaPrior(params, bounds, 55.98, 54.32, cfg, family="tiny",
                     stats={"outer_steps_done": 3, "loss_history": [0.5, 0.25]},
                     shift_prior=shift)


def tensors_of(prior: MetaPrior) -> dict:
    return {f"param.{i:03d}": p.float() for i, p in enumerate(prior.params)}


def expect_error(path: Path, match: str | None = None) -> None:
    with pytest.raises(PriorFileError, match=match) as info:
        MetaPrior.load(path)
    assert str(path) in str(info.value)


def test_every_flipped_byte_loads_identically_or_raises_prior_file_error(tmp_path):
    prior = small_prior()
    path = tmp_path / "p.prior"
    prior.save(path)
    data = path.read_bytes()
    assert len(data) < 8000  # the matrix below loads the file once per byte
    want = prior.predict(GRID)
    flipped = tmp_path / "flipped.prior"
    outcomes = {"error": 0, "identical": 0}
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= 1 << (i % 8)  # every bit position occurs along the file
        flipped.write_bytes(bytes(bad))
        try:
            loaded = MetaPrior.load(flipped)
        except PriorFileError:
            outcomes["error"] += 1
            continue
        # Anything else escaping load fails the test with its traceback.
        assert torch.equal(loaded.predict(GRID), want), f"byte {i} flipped loads differently"
        outcomes["identical"] += 1
    assert outcomes["error"] > 0.9 * len(data), outcomes


def header_bytes_span(data: bytes, text: bytes) -> int:
    n = int.from_bytes(data[:8], "little")
    at = data.find(text, 8, 8 + n)
    assert at > 0, text
    return at


def test_one_bit_flip_of_y_std_in_the_header_is_detected(tmp_path):
    """55.98 -> 15.98 is one bit ('5' ^ '1' = 0x04) and used to load silently."""
    path = tmp_path / "p.prior"
    small_prior().save(path)
    data = bytearray(path.read_bytes())
    at = header_bytes_span(bytes(data), b'y_std\\": 54.32')
    data[at + len(b'y_std\\": ')] ^= ord("5") ^ ord("1")
    path.write_bytes(bytes(data))
    expect_error(path, "checksum")


def test_one_bit_flip_in_the_bounds_is_detected(tmp_path):
    path = tmp_path / "p.prior"
    small_prior().save(path)
    data = bytearray(path.read_bytes())
    at = header_bytes_span(bytes(data), b"4.0]]")
    data[at] ^= ord("4") ^ ord("5")
    path.write_bytes(bytes(data))
    expect_error(path, "checksum")


@pytest.mark.parametrize(("field", "value"), [
    ("y_std", 0.0), ("y_std", -1.0), ("y_std", float("nan")), ("y_mean", float("inf")),
    ("y_std", "54"), ("y_mean", True), ("bounds", [[-4.0], [float("inf")]]),
    ("bounds", [[4.0], [-4.0]]), ("bounds", [[-4.0, 0.0], [4.0, 1.0]]), ("bounds", "x"),
    ("n_adapted", -1), ("n_adapted", 1.5), ("family", 3), ("dim", 2), ("config", []),
    ("stats", [1]), ("shift_prior", [0.0]), ("shift_prior", {"mean": [0.0]}),
])
def test_invalid_header_field_with_a_valid_checksum(tmp_path, field, value):
    """A file written by a buggy or hostile writer, checksum and all, is still refused."""
    prior = small_prior()
    path = tmp_path / "p.prior"
    write_prior_file(path, tensors_of(prior), dict(prior.header(), **{field: value}))
    expect_error(path, field.replace("_", "[_ ]"))


@pytest.mark.parametrize("field", ["family", "bounds", "y_mean", "y_std", "config"])
def test_missing_header_field(tmp_path, field):
    prior = small_prior()
    header = {k: v for k, v in prior.header().items() if k != field}
    path = tmp_path / "p.prior"
    write_prior_file(path, tensors_of(prior), header)
    expect_error(path, field)


def set_weight(name: str, value):
    def edit(tensors: dict) -> None:
        tensors[name] = value(tensors[name])
    return edit


def delete_last_bias(tensors: dict) -> None:
    del tensors[f"param.{len(tensors) - 1:03d}"]


def with_entry(value: float):
    def edit(t):
        t = t.clone()
        t[0, 1] = value
        return t
    return edit


# Weights edited after training and saved with a valid checksum: each is refused on load,
# not later inside predict or a GP fit.
BAD_WEIGHTS = {
    "nan": (set_weight("param.002", with_entry(float("nan"))), "NaN or inf"),
    "inf": (set_weight("param.002", with_entry(float("inf"))), "NaN or inf"),
    "missing last bias": (delete_last_bias, "shapes"),
    "reshaped 1x4": (set_weight("param.000", lambda t: t.reshape(1, 4)), "shapes"),
    "reshaped 4": (set_weight("param.000", lambda t: t.reshape(4)), "shapes"),
    "reshaped 4x1x1": (set_weight("param.000", lambda t: t.reshape(4, 1, 1)), "shapes"),
    "integer": (set_weight("param.001", lambda t: torch.zeros(4, dtype=torch.int32)),
                "floating point"),
}


@pytest.mark.parametrize("case", BAD_WEIGHTS)
def test_bad_weights_with_a_valid_checksum_fail_at_load(tmp_path, case):
    edit, match = BAD_WEIGHTS[case]
    prior = small_prior()
    tensors = tensors_of(prior)
    edit(tensors)
    path = tmp_path / "p.prior"
    write_prior_file(path, tensors, prior.header())
    expect_error(path, match)


def test_file_with_the_old_tensors_only_checksum_still_loads(tmp_path):
    prior = small_prior()
    tensors = tensors_of(prior)
    meta = {"format": FORMAT_NAME, "format_version": "1", "checksum": checksum(tensors),
            "header": json.dumps(prior.header(), sort_keys=True)}
    path = tmp_path / "old.prior"
    path.write_bytes(st_save(tensors, metadata=meta))
    loaded = MetaPrior.load(path)
    assert torch.equal(loaded.predict(GRID), prior.predict(GRID))
    assert loaded.shift_prior == prior.shift_prior
    # ... and its tensors are still verified.
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    expect_error(path, "checksum")


def test_unknown_checksum_scheme(tmp_path):
    prior = small_prior()
    tensors = tensors_of(prior)
    meta = {"format": FORMAT_NAME, "format_version": "1", "checksum_scheme": "7",
            "checksum": checksum(tensors), "header": json.dumps(prior.header())}
    path = tmp_path / "p.prior"
    path.write_bytes(st_save(tensors, metadata=meta))
    expect_error(path, "'7'")


def test_deeply_nested_json_is_a_prior_file_error(tmp_path):
    prior = small_prior()
    deep = "[" * 100_000 + "]" * 100_000
    # In the metaprior header (with a valid checksum) ...
    path = tmp_path / "inner.prior"
    header = json.dumps(prior.header())
    write_prior_file(path, tensors_of(prior), prior.header())
    meta_header = header[:-1] + ', "deep": ' + deep + "}"
    tensors = tensors_of(prior)
    from metaprior.priorfile import CHECKSUM_SCHEME, full_checksum

    meta = {"format": FORMAT_NAME, "format_version": "1", "checksum_scheme": CHECKSUM_SCHEME,
            "header": meta_header}
    meta["checksum"] = full_checksum(tensors, meta)
    path.write_bytes(st_save(tensors, metadata=meta))
    expect_error(path, "nested|Recursion")
    # ... nested but within Python's recursion limit, which would break `info --json` later ...
    meta["header"] = header[:-1] + ', "deep": ' + "[" * 200 + "]" * 200 + "}"
    meta["checksum"] = full_checksum(tensors, meta)
    path.write_bytes(st_save(tensors, metadata=meta))
    expect_error(path, "nested")
    # ... and in the safetensors header itself.
    body = ('{"__metadata__": {"format": "metaprior"}, "x": ' + deep + "}").encode()
    path.write_bytes(len(body).to_bytes(8, "little") + body)
    expect_error(path, "nested|Recursion")


@pytest.mark.parametrize("raw", [b"[1, 2]", b'{"__metadata__": [1]}',
                                 b'{"__metadata__": {"format": 1}}', b'"text"'])
def test_safetensors_header_of_the_wrong_shape(tmp_path, raw):
    path = tmp_path / "p.prior"
    body = raw if raw.startswith(b"{") else b"{" + raw  # the reader wants a JSON object first
    path.write_bytes(len(body).to_bytes(8, "little") + body)
    expect_error(path)
