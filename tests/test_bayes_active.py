"""Active learning and review flags: acquire() against a brute-force loop, determinism, errors;
ReviewRule thresholds for a target review rate."""

from __future__ import annotations

import math

import pytest
import torch

from riskrl.bayes import BayesMLP, ClassPrediction, ReviewRule, acquire, fit, uncertainty_scores

FAMILIES = ["bbb", "mc_dropout", "ensemble"]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _classifier(family: str, **kw) -> BayesMLP:
    torch.manual_seed(0)
    model = BayesMLP(
        2,
        3,
        hidden=(16,),
        family=family,
        likelihood="categorical",
        n_members=4,
        dropout=0.3,
        posterior_rho_init=-1.5,
        **kw,
    )
    g = _gen(1)
    x = torch.randn(60, 2, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    fit(model, x, y, epochs=5, lr=1e-2, seed=0)
    return model


def _brute_force_scores(
    model: BayesMLP, pool: torch.Tensor, criterion: str, n: int, seed: int
) -> list[float]:
    """Score each pool point on its own, by the definitions, under the same posterior draws."""
    particles = model.particles(n, _gen(seed))
    scores = []
    with torch.no_grad():
        for i in range(pool.shape[0]):
            probs = [torch.softmax(particles(pool[i : i + 1])[s, 0], -1) for s in range(n)]
            mean = sum(probs) / n
            total = -sum(float(p * math.log(p)) for p in mean if p > 0)
            expected = sum(-sum(float(q * math.log(q)) for q in p if q > 0) for p in probs) / n
            std = sum(float(torch.stack([p[c] for p in probs]).std(correction=0)) for c in range(3)) / 3
            scores.append(
                {
                    "bald": total - expected,
                    "entropy": total,
                    "confidence": 1 - float(mean.max()),
                    "std": std,
                }[criterion]
            )
    return scores


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("criterion", ["bald", "entropy", "confidence", "std"])
def test_acquire_picks_the_highest_scores(family: str, criterion: str) -> None:
    model = _classifier(family)
    pool = 3 * torch.randn(25, 2, generator=_gen(2))
    n_draws = 4 if family == "ensemble" else 16
    picked = acquire(model, pool, 6, criterion, n_samples=16, seed=5)
    assert picked.shape == (6,) and picked.dtype == torch.int64
    scores = torch.tensor(_brute_force_scores(model, pool, criterion, n_draws, seed=5), dtype=torch.float64)
    best = torch.sort(scores, descending=True, stable=True).indices[:6]
    # same set, best first (allow reordering only among numerically tied scores)
    assert set(picked.tolist()) == set(best.tolist())
    assert all(scores[picked[i]] >= scores[picked[i + 1]] - 1e-6 for i in range(5))
    # every picked point scores at least as high as every point left in the pool
    rest = torch.ones(25, dtype=torch.bool)
    rest[picked] = False
    assert scores[picked].min() >= scores[rest].max() - 1e-6


def test_acquire_is_deterministic_for_a_seed_and_random_is_uniform_without_repeats() -> None:
    model = _classifier("mc_dropout")
    pool = 3 * torch.randn(200, 2, generator=_gen(2))
    for criterion in ("bald", "random"):
        a = acquire(model, pool, 20, criterion, seed=3)
        assert torch.equal(a, acquire(model, pool, 20, criterion, seed=3))
        assert torch.equal(a, acquire(model, pool, 20, criterion, generator=_gen(3)))
    assert not torch.equal(
        acquire(model, pool, 20, "random", seed=3), acquire(model, pool, 20, "random", seed=4)
    )
    picks = acquire(model, pool, 200, "random", seed=0)
    assert sorted(picks.tolist()) == list(range(200))
    counts = torch.zeros(10)
    for s in range(300):  # each of 10 points picked ~ 300 * 3 / 10 times
        counts[acquire(model, pool[:10], 3, "random", seed=s)] += 1
    assert counts.min() > 60 and counts.max() < 120
    # ties go to the lower index: a pool of identical points
    same = torch.zeros(8, 2)
    assert acquire(model, same, 3, "bald", seed=0).tolist() == [0, 1, 2]


def test_acquire_works_on_a_regressor_with_std() -> None:
    torch.manual_seed(0)
    x = torch.rand(80, 1) * 2
    model = BayesMLP(1, 1, hidden=(16,), family="ensemble")
    fit(model, x, 2 * x, epochs=30, lr=1e-2, seed=0)
    pool = torch.tensor([[0.5], [1.0], [8.0], [1.5], [-6.0]])
    assert set(acquire(model, pool, 2, "std", seed=0).tolist()) == {2, 4}  # far from the data
    with pytest.raises(ValueError, match="needs a classifier"):
        acquire(model, pool, 2, "bald")


def test_acquire_errors() -> None:
    model = _classifier("ensemble")
    pool = torch.randn(5, 2)
    with pytest.raises(ValueError, match="unknown criterion 'margin'; allowed values: bald, entropy"):
        acquire(model, pool, 2, "margin")
    with pytest.raises(ValueError, match="empty pool"):
        acquire(model, torch.zeros(0, 2), 1)
    with pytest.raises(ValueError, match=r"n must be an int in \[1, 5\] \(the pool size\), got 6"):
        acquire(model, pool, 6)
    with pytest.raises(ValueError, match=r"n must be an int in \[1, 5\]"):
        acquire(model, pool, 0)
    with pytest.raises(ValueError, match=r"pool must have shape \(B, 2\)"):
        acquire(model, torch.randn(5, 3), 2)
    with pytest.raises(ValueError, match="NaN"):
        acquire(model, torch.tensor([[0.0, float("nan")]]), 1)
    with pytest.raises(ValueError, match="BayesMLP"):
        acquire(torch.nn.Linear(2, 3), pool, 1)  # type: ignore[arg-type]


def _synthetic_prediction(n: int, seed: int) -> ClassPrediction:
    return ClassPrediction.from_logits(2 * torch.randn(8, n, 4, generator=_gen(seed)))


@pytest.mark.parametrize("criterion", ["bald", "entropy", "confidence", "std"])
def test_review_rule_hits_the_target_rate(criterion: str) -> None:
    heldout, fresh = _synthetic_prediction(2000, 0), _synthetic_prediction(4000, 1)
    rule = ReviewRule.fit(heldout, target_rate=0.1, criterion=criterion)
    assert rule.criterion == criterion and rule.target_rate == 0.1
    assert rule.flag(heldout).float().mean().item() == pytest.approx(0.1, abs=1e-3)
    assert rule.flag(fresh).float().mean().item() == pytest.approx(0.1, abs=0.02)  # same distribution
    flagged = rule.flag(heldout)
    scores = uncertainty_scores(heldout, criterion)
    assert scores[flagged].min() > scores[~flagged].max()  # the most uncertain are the ones flagged
    if criterion == "confidence":
        assert (heldout.confidence[flagged].max() < heldout.confidence[~flagged].min()).item()
    never = ReviewRule.fit(heldout, 0.0, criterion)  # threshold = the held-out maximum
    assert not never.flag(heldout).any() and never.flag(fresh).float().mean() < 0.01
    assert ReviewRule.fit(heldout, 1.0, criterion).flag(fresh).all()


def test_review_rule_errors() -> None:
    pred = _synthetic_prediction(10, 0)
    with pytest.raises(ValueError, match=r"target_rate must be in \[0, 1\]"):
        ReviewRule.fit(pred, 1.5)
    with pytest.raises(ValueError, match="unknown criterion 'random'"):
        ReviewRule.fit(pred, 0.1, "random")
    with pytest.raises(ValueError, match="zero held-out"):
        ReviewRule.fit(ClassPrediction.from_logits(torch.zeros(2, 0, 3)), 0.1)
