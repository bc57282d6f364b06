"""Session 18's diagnostic: does the shift ensemble's leave-one-out measure its error on new
points? On `benchmarks.calibration`'s points (8 held-out tasks, after 5 and 10 random points),
for the default's scored shift ensemble alone (members moment-matched, observation noise, no
variance factor), the mean squared z-score and the median z-score squared over 0.455 (1 when
the 50% interval is calibrated) of:

- `test_*`: the 256 held-out test points (what the factor should be);
- `loo_*`: the closed-form leave-one-out that `metaprior.gp.ensemble_calibration` uses, whose
  members' means (the shift posterior) have seen the point;
- `honest_*` (with a fifth argument): each training point predicted by an ensemble built
  without it (`shift_gp`: the shift posterior re-inferred, the residual refitted), n builds.

`factor` is the committed `shift_variance_factor`; `w_shift` the ensemble's weight.

    python benchmarks/results/trust_variants/patches/loo_honesty_calibration.py \
        hartmann3,branin <v3 cache> <yahpo data> out.csv [honest]
"""

import sys
import warnings

import pandas as pd
import torch

from benchmarks.calibration import SIZES, calibration_points
from benchmarks.context import load_context
from metaprior.gp.ensemble_calibration import loo_standardised_errors
from metaprior.gp.trusted import TrustedPriorModel, member_moments, shift_gp

MEDIAN_CHI2_1 = 0.455  # the median of a squared standard normal


def squared_z(ensemble, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """`m`: squared standardised errors of the moment-matched ensemble at `X` (`m x d`)."""
    with torch.no_grad():
        d = ensemble.posterior(X, observation_noise=True).distribution
        mean, covariance = member_moments(d.mean, d.covariance_matrix)
    return (y - mean).square() / covariance.diagonal().clamp(min=1e-300)


def summary(prefix: str, z2: torch.Tensor) -> dict:
    return {f"{prefix}_mean_z2": float(z2.mean()),
            f"{prefix}_med_z2": float(z2.median()) / MEDIAN_CHI2_1}


def main(families: str, cache: str, yahpo: str, out: str, honest: bool) -> None:
    warnings.simplefilter("ignore")
    rows = []
    for family in families.split(","):
        ctx = load_context(family, cache, yahpo)
        for ti, _task, X_all, y_all in calibration_points(ctx, family, 8):
            X_test, y_test = X_all[max(SIZES):], y_all[max(SIZES):]
            for n in (5, 10):
                X, Y = X_all[:n], y_all[:n].unsqueeze(-1)
                model = TrustedPriorModel(X, Y, ctx.prior, bounds=ctx.family.bounds, seed=ti)
                if model.shift_state != "scored":
                    continue
                row = {"family": family, "task": ti, "n": n,
                       "w_shift": model.component_weights.get("shift", 0.0),
                       "factor": model.shift_variance_factor,
                       **summary("test", squared_z(model.shift, X_test, y_test)),
                       **summary("loo", loo_standardised_errors(model.shift))}
                if honest:
                    z2 = []
                    for i in range(n):
                        keep = torch.arange(n) != i
                        ensemble, _ = shift_gp(X[keep], Y[keep], ctx.prior, "scored",
                                               "prequential", ti)
                        ensemble.eval()
                        z2.append(squared_z(ensemble, X[i:i + 1], Y[i:i + 1, 0])[0])
                    row.update(summary("honest", torch.stack(z2)))
                rows.append(row)
    pd.DataFrame(rows).to_csv(out, index=False)


if __name__ == "__main__":
    main(*sys.argv[1:5], honest=len(sys.argv) > 5)
