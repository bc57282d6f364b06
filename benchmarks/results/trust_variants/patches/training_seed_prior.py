"""Meta-train a benchmark prior with another length or seed (session 17's screen).

usage: python training_seed_prior.py FAMILY OUTER_STEPS SEED OUT.prior YAHPO_DATA
"""
import dataclasses
import sys
import warnings

import metaprior as mp
from benchmarks.context import prior_config
from metaprior.tasks import get_family

warnings.simplefilter("ignore")
name, steps, seed, out, yahpo = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
family = get_family(name, yahpo)
prior = mp.meta_train(family, dataclasses.replace(prior_config(family), outer_steps=steps),
                      seed=seed, progress=False)
prior.save(out)
