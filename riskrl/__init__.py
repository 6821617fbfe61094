"""riskrl: risk-aware reinforcement learning.

A Bayesian neural network gives every (state, action) an estimated return and its
epistemic standard deviation; policies act on

    score(s, a) = mean(s, a) - risk_tolerance * std(s, a)

``risk_tolerance > 0`` is pessimistic, ``0`` risk-neutral, ``< 0`` optimistic.
"""

from riskrl._version import __version__
from riskrl.evaluation import EvalResult, evaluate
from riskrl.risk import cvar, lcb
from riskrl.robustness import GridResult, robustness_curve, robustness_grid

__all__ = [
    "EvalResult",
    "GridResult",
    "__version__",
    "cvar",
    "evaluate",
    "lcb",
    "robustness_curve",
    "robustness_grid",
]
