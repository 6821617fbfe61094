"""Bayesian neural networks with one uncertainty interface (predict / particles).

Families: ``bbb`` (Bayes-by-backprop), ``mc_dropout`` and a vectorised ``ensemble`` (optionally
with randomized priors), each with an optional heteroscedastic head::

    model = BayesMLP(1, 1, family="ensemble", heteroscedastic=True)
    fit(model, x, y, epochs=200)
    pred = model.predict(x_test)            # mean, epistemic_std, aleatoric_std, total_std
    p = model.particles(8); p(x_test)       # (8, B, 1): 8 frozen posterior draws

Classifiers (``likelihood="categorical"``, optionally with a conv trunk) predict a
:class:`ClassPrediction` (probabilities, entropy, expected entropy, mutual information);
:func:`acquire` picks pool points to label and :class:`ReviewRule` flags predictions for review.
"""

from riskrl.bayes import calibration
from riskrl.bayes.active import ACQUISITION_CRITERIA, SCORES, ReviewRule, acquire, uncertainty_scores
from riskrl.bayes.calibration import (
    ReliabilityDiagram,
    accuracy,
    auroc,
    calibration_curve,
    categorical_nll,
    expected_calibration_error,
    gaussian_nll,
    interval_coverage,
    reliability_diagram,
    rmse,
)
from riskrl.bayes.ensemble import EnsembleConv2d, EnsembleLinear
from riskrl.bayes.layers import BayesConv2d, BayesLinear, MCDropout, PriorSpec
from riskrl.bayes.mlp import ACTIVATIONS, FAMILIES, LIKELIHOODS, BayesMLP, Standardizer
from riskrl.bayes.posteriors import (
    POSTERIORS,
    BBBPosterior,
    DropoutPosterior,
    EnsemblePosterior,
    Posterior,
    exact_members,
)
from riskrl.bayes.prediction import ClassPrediction, Particles, Prediction
from riskrl.bayes.training import FitHistory, Trainer, copy_buffers, fit, polyak_update

__all__ = [
    "ACQUISITION_CRITERIA",
    "ACTIVATIONS",
    "FAMILIES",
    "LIKELIHOODS",
    "POSTERIORS",
    "SCORES",
    "BBBPosterior",
    "BayesConv2d",
    "BayesLinear",
    "BayesMLP",
    "ClassPrediction",
    "DropoutPosterior",
    "EnsembleConv2d",
    "EnsembleLinear",
    "EnsemblePosterior",
    "FitHistory",
    "MCDropout",
    "Particles",
    "Posterior",
    "Prediction",
    "PriorSpec",
    "ReliabilityDiagram",
    "ReviewRule",
    "Standardizer",
    "Trainer",
    "accuracy",
    "acquire",
    "auroc",
    "calibration",
    "calibration_curve",
    "categorical_nll",
    "copy_buffers",
    "exact_members",
    "expected_calibration_error",
    "fit",
    "gaussian_nll",
    "interval_coverage",
    "polyak_update",
    "reliability_diagram",
    "rmse",
    "uncertainty_scores",
]
