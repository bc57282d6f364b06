"""Session 16's diagnostic: the default's standardised errors on the held-out points of
`benchmarks.calibration`, split by the point's true value (the lowest 10% of the 256 test
points against the rest).

    python benchmarks/results/trust_variants/patches/coverage_by_value_calibration.py \
        branin,hartmann3 <v3 cache> <yahpo data> out.csv
"""

import sys
import warnings

import pandas as pd
import torch

from benchmarks.calibration import SIZES, Z50, Z90, calibration_points
from benchmarks.context import load_context
from metaprior.gp.trusted import TrustedPriorModel


def main(families: str, cache: str, yahpo: str, out: str) -> None:
    warnings.simplefilter("ignore")
    rows = []
    for family in families.split(","):
        ctx = load_context(family, cache, yahpo)
        bounds = ctx.family.bounds
        for ti, task, X_all, y_all in calibration_points(ctx, family, 8):
            X_test, y_test = X_all[max(SIZES):], y_all[max(SIZES):]
            low = y_test <= y_test.quantile(0.1)
            for n in (5, 10):
                model = TrustedPriorModel(X_all[:n], y_all[:n].unsqueeze(-1), ctx.prior,
                                          bounds=bounds, seed=ti)
                with torch.no_grad():
                    post = model.posterior(X_test, observation_noise=True)
                    mean = post.mean[..., 0]
                    sd = post.variance[..., 0].clamp(min=1e-12).sqrt()
                z = ((y_test - mean) / sd).abs()
                for group, mask in (("low10", low), ("rest", ~low)):
                    rows.append({"family": family, "task": ti, "n": n, "group": group,
                                 "c50": float((z[mask] <= Z50).double().mean()),
                                 "c90": float((z[mask] <= Z90).double().mean()),
                                 "med_abs_z": float(z[mask].median()),
                                 "sd_over_range": float(sd[mask].median()
                                                        / (task.y_max - task.y_min))})
    pd.DataFrame(rows).to_csv(out, index=False)


if __name__ == "__main__":
    main(*sys.argv[1:5])
