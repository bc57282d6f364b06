"""Tasks unlike a family (metaprior.tasks.mismatch): the kinds, reproducibility, the mismatch."""

from __future__ import annotations

import pytest
import torch

from metaprior.errors import TaskFamilyError
from metaprior.tasks import Branin, mismatched_tasks
from metaprior.tasks.mismatch import KINDS, random_landscape


def test_tasks_cycle_kinds_and_are_reproducible():
    fam = Branin()
    tasks = mismatched_tasks(fam, 4)
    assert [t.name.split("-")[2] for t in tasks] == [*KINDS, KINDS[0]]
    again = mismatched_tasks(fam, 4)
    X = fam.uniform_points((16,), torch.Generator().manual_seed(0))
    for a, b in zip(tasks, again, strict=True):
        torch.testing.assert_close(a(X), b(X))
        assert a.y_min == b.y_min and a.y_min < a.y_max
        assert float(a(X).min()) >= a.y_min - 1e-9  # y* is below every point


def test_tasks_are_unlike_the_family():
    fam = Branin()
    base = fam.held_out_tasks(3, seed=0)
    harm = mismatched_tasks(fam, 3)
    X = fam.uniform_points((256,), torch.Generator().manual_seed(1))
    torch.testing.assert_close(harm[1](X), -base[1](X))  # negated
    for i in (0, 2):  # another landscape; a far translation
        corr = torch.corrcoef(torch.stack([harm[i](X), base[i](X)]))[0, 1]
        assert abs(float(corr)) < 0.9
    with pytest.raises(TaskFamilyError):
        mismatched_tasks(fam, 0)


def test_random_landscape_is_smooth_and_standardised():
    fn = random_landscape(2, torch.Generator().manual_seed(0))
    U = torch.rand(4096, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = fn(U)
    assert 0.5 < float(y.std()) < 1.5
    step = fn(U + 1e-3) - y
    assert float(step.abs().max()) < 0.2
