"""Transfer baselines written from their papers: RGPE, FSBO and the greedy portfolio, in the unit
cube, minimising."""

from benchmarks.baselines.fsbo import FSBOOptimizer, FSBOPrior, fsbo_meta_train
from benchmarks.baselines.portfolio import PortfolioOptimizer
from benchmarks.baselines.rgpe import RGPEOptimizer
from benchmarks.baselines.source_data import source_data_from_family

__all__ = [
    "FSBOOptimizer",
    "FSBOPrior",
    "PortfolioOptimizer",
    "RGPEOptimizer",
    "fsbo_meta_train",
    "source_data_from_family",
]
