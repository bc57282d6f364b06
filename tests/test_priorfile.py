"""Prior files: anything but a valid prior raises PriorFileError naming the file; no pickle."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from metaprior.errors import PriorFileError
from metaprior.prior import MetaPrior
from metaprior.priorfile import write_prior_file


class Exploit:
    """A pickle payload that creates a marker file when unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.fixture()
def saved(tiny_prior, tmp_path) -> Path:
    path = tmp_path / "good.prior"
    tiny_prior.save(path)
    return path


def expect_error(path: Path, match: str | None = None) -> PriorFileError:
    with pytest.raises(PriorFileError, match=match) as info:
        MetaPrior.load(path)
    assert str(path) in str(info.value)
    return info.value


def metadata(path: Path) -> dict:
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + n])["__metadata__"]


def test_valid_file_loads(saved, tiny_prior):
    loaded = MetaPrior.load(saved)
    assert all(torch.equal(p, q) for p, q in zip(loaded.params, tiny_prior.params, strict=True))
    assert metadata(saved)["format"] == "metaprior"


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.999])
def test_truncated_file(saved, keep):
    data = saved.read_bytes()
    saved.write_bytes(data[:int(len(data) * keep)])
    expect_error(saved)


@pytest.mark.parametrize("n", [0, 5])
def test_tiny_and_empty_files(tmp_path, n):
    path = tmp_path / "tiny.prior"
    path.write_bytes(b"\x01" * n)
    expect_error(path, "truncated")


@pytest.mark.parametrize("where", [-1, -100, -5000])
def test_flipped_byte_in_tensor_data(saved, where):
    data = bytearray(saved.read_bytes())
    n_header = int.from_bytes(data[:8], "little")
    assert len(data) + where > 8 + n_header  # inside the tensor data
    data[where] ^= 0x10
    saved.write_bytes(bytes(data))
    expect_error(saved, "checksum")


def test_newer_format_version(saved):
    tensors = st_load(saved.read_bytes())
    meta = dict(metadata(saved))
    meta["format_version"] = "99"
    saved.write_bytes(st_save(tensors, metadata=meta))
    expect_error(saved, "99")


def test_non_numeric_format_version(saved):
    tensors = st_load(saved.read_bytes())
    meta = dict(metadata(saved), format_version="one")
    saved.write_bytes(st_save(tensors, metadata=meta))
    expect_error(saved, "'one'")


@pytest.mark.parametrize("writer", ["pickle", "torch"])
def test_pickle_renamed_never_runs(tmp_path, writer):
    marker = tmp_path / "pwned"
    payload = {"params": [torch.zeros(3)], "x": Exploit(marker)}
    # The payload is live: unpickling it really does create the marker.
    pickle.loads(pickle.dumps(payload))
    assert marker.exists()
    marker.unlink()
    path = tmp_path / "evil.prior"
    if writer == "pickle":
        path.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, path)
    expect_error(path)
    assert not marker.exists()


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.prior"
    g = torch.Generator().manual_seed(0)
    path.write_bytes(bytes(torch.randint(0, 256, (4096,), generator=g, dtype=torch.uint8).tolist()))
    expect_error(path)


def test_header_claims_json_but_is_garbage(tmp_path):
    path = tmp_path / "garbage.prior"
    body = b"{" + b"\xff" * 40
    path.write_bytes(len(body).to_bytes(8, "little") + body + b"\x00" * 16)
    expect_error(path, "corrupt")


def test_missing_file_and_directory(tmp_path):
    expect_error(tmp_path / "nope.prior", "no such")
    expect_error(tmp_path, "no such")


def test_plain_safetensors_without_metaprior_header(tmp_path):
    path = tmp_path / "plain.safetensors"
    path.write_bytes(st_save({"w": torch.zeros(2, 2)}))
    expect_error(path, "metaprior header")


def test_valid_container_with_inconsistent_contents(tiny_prior, tmp_path):
    tensors = {f"param.{i:03d}": p for i, p in enumerate(tiny_prior.params)}
    header = tiny_prior.header()
    path = tmp_path / "bad-config.prior"
    write_prior_file(path, tensors, dict(header, config=dict(header["config"], inner_lr=-1.0)))
    expect_error(path, "inner_lr")
    write_prior_file(path, tensors, {k: v for k, v in header.items() if k != "y_std"})
    expect_error(path, "y_std")
    # Weights that do not fit the stored hidden sizes.
    shallow = {f"param.{i:03d}": p for i, p in enumerate(tiny_prior.params[2:])}
    write_prior_file(path, shallow, header)
    expect_error(path, "layer sizes")
    # A gap in the weights' names.
    write_prior_file(path, dict(list(tensors.items())[2:]), header)
    expect_error(path, "param.000")


def test_non_finite_bounds_name_the_file(tiny_prior, tmp_path):
    tensors = {f"param.{i:03d}": p for i, p in enumerate(tiny_prior.params)}
    path = tmp_path / "nan-bounds.prior"
    write_prior_file(path, tensors, dict(tiny_prior.header(), bounds=[[0.0], [float("nan")]]))
    expect_error(path, "bounds")
