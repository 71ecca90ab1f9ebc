"""Transfer from randomized simulation to the real camera: strategies, adaptation, report."""

from sim2real.transfer.adapt import AdaptConfig, evaluate_offline, split_real, train_strategy
from sim2real.transfer.strategies import STRATEGIES, Strategy

__all__ = ["STRATEGIES", "AdaptConfig", "Strategy", "evaluate_offline", "split_real", "train_strategy"]
