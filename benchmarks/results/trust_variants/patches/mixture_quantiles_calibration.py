"""Session 16's diagnostic: the default's interval coverage as `benchmarks.calibration` measures
it (the moment-matched Gaussian) beside the model average's own mixture (the GPs kept in the
average, the shift ensemble's members spread as the variance factor scales them).

    python benchmarks/results/trust_variants/patches/mixture_quantiles_calibration.py \
        branin,forrester <v3 cache> <yahpo data> out.csv
"""

import math
import sys
import warnings

import pandas as pd
import torch

from benchmarks.calibration import fitted_models, score
from metaprior.gp.trusted import CERTAIN, TrustedPriorModel

STANDARD = torch.distributions.Normal(0.0, 1.0)


def mixture_cdf(model: TrustedPriorModel, X, y):
    """The mixture's CDF at `y` (`n x 1`) for points `X` (`n x 1 x d`)."""
    kept = {k: w for k, w in model.component_weights.items() if w > CERTAIN}
    total, cdf = sum(kept.values()), torch.zeros_like(y)
    with torch.no_grad():
        for name, w in kept.items():
            dist = getattr(model, name).posterior(X, observation_noise=True).distribution
            mean, var = dist.mean, dist.variance
            if name == "shift":  # members along dimension -2; the factor scales their spread too
                centre, f = mean.mean(-2, keepdim=True), model.shift_variance_factor
                mean, var = centre + math.sqrt(f) * (mean - centre), f * var
                cdf = cdf + w / total * STANDARD.cdf((y.unsqueeze(-2) - mean) / var.sqrt()).mean(-2)
            else:
                cdf = cdf + w / total * STANDARD.cdf((y - mean) / var.clamp(min=1e-24).sqrt())
    return cdf


def main(families: str, cache: str, yahpo: str, out: str) -> None:
    warnings.simplefilter("ignore")
    rows = []
    for family in families.split(","):
        for fit in fitted_models(family, 8, cache, yahpo, ["metaprior"], sizes=(5, 10)):
            X_test, y_test, model = fit.X_test, fit.y_test, fit.model
            gauss = score(model, X_test, y_test, float(y_test.std()) or 1.0)
            cdf = mixture_cdf(model, X_test.unsqueeze(-2), y_test.unsqueeze(-1)).reshape(-1)
            rows.append({"family": family, "task": fit.task_index, "n": fit.n,
                         "g50": gauss["cover50"], "g90": gauss["cover90"],
                         "m50": float(((cdf >= 0.25) & (cdf <= 0.75)).double().mean()),
                         "m90": float(((cdf >= 0.05) & (cdf <= 0.95)).double().mean()),
                         "w": {k: round(v, 2) for k, v in model.component_weights.items()}})
    pd.DataFrame(rows).to_csv(out, index=False)


if __name__ == "__main__":
    main(*sys.argv[1:5])
