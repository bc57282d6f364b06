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

from benchmarks.calibration import Z50, Z90, fitted_models


def main(families: str, cache: str, yahpo: str, out: str) -> None:
    warnings.simplefilter("ignore")
    rows = []
    for family in families.split(","):
        for fit in fitted_models(family, 8, cache, yahpo, ["metaprior"], sizes=(5, 10)):
            y_test = fit.y_test
            low = y_test <= y_test.quantile(0.1)
            with torch.no_grad():
                post = fit.model.posterior(fit.X_test, observation_noise=True)
                mean = post.mean[..., 0]
                sd = post.variance[..., 0].clamp(min=1e-12).sqrt()
            z = ((y_test - mean) / sd).abs()
            for group, mask in (("low10", low), ("rest", ~low)):
                rows.append({"family": family, "task": fit.task_index, "n": fit.n,
                             "group": group,
                             "c50": float((z[mask] <= Z50).double().mean()),
                             "c90": float((z[mask] <= Z90).double().mean()),
                             "med_abs_z": float(z[mask].median()),
                             "sd_over_range": float(sd[mask].median()
                                                    / (fit.task.y_max - fit.task.y_min))})
    pd.DataFrame(rows).to_csv(out, index=False)


if __name__ == "__main__":
    main(*sys.argv[1:5])
