"""Bayesian neural networks with one uncertainty interface (predict / particles).

Families: ``bbb`` (Bayes-by-backprop), ``mc_dropout`` and a vectorised ``ensemble`` (optionally
with randomized priors), each with an optional heteroscedastic head::

    model = BayesMLP(1, 1, family="ensemble", heteroscedastic=True)
    fit(model, x, y, epochs=200)
    pred = model.predict(x_test)            # mean, epistemic_std, aleatoric_std, total_std
    p = model.particles(8); p(x_test)       # (8, B, 1): 8 frozen posterior draws
"""

from riskrl.bayes import calibration
from riskrl.bayes.calibration import calibration_curve, gaussian_nll, interval_coverage, rmse
from riskrl.bayes.ensemble import EnsembleLinear
from riskrl.bayes.layers import BayesLinear, MCDropout
from riskrl.bayes.mlp import ACTIVATIONS, FAMILIES, BayesMLP, Standardizer
from riskrl.bayes.prediction import Particles, Prediction
from riskrl.bayes.training import FitHistory, fit

__all__ = [
    "ACTIVATIONS",
    "FAMILIES",
    "BayesLinear",
    "BayesMLP",
    "EnsembleLinear",
    "FitHistory",
    "MCDropout",
    "Particles",
    "Prediction",
    "Standardizer",
    "calibration",
    "calibration_curve",
    "fit",
    "gaussian_nll",
    "interval_coverage",
    "rmse",
]
