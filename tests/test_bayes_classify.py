"""Classification with riskrl.bayes: the categorical likelihood, the entropy decomposition,
classification metrics (accuracy, NLL, ECE, reliability diagram, AUROC) and their errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from riskrl.bayes import (
    BayesMLP,
    ClassPrediction,
    accuracy,
    auroc,
    categorical_nll,
    expected_calibration_error,
    fit,
    reliability_diagram,
)

FAMILIES = ["bbb", "mc_dropout", "ensemble"]
TOY_KW = {"bbb": {"posterior_rho_init": -3.0}, "mc_dropout": {"dropout": 0.2}, "ensemble": {}}


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def two_blobs() -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes: Gaussian blobs of std 0.5 at (-2, 0) and (2, 0)."""
    g = _gen(0)
    y = torch.arange(200) % 2
    x = 0.5 * torch.randn(200, 2, generator=g) + torch.stack([4.0 * y - 2.0, torch.zeros(200)], 1)
    return x, y


def _circle(r: float, n: int = 64) -> torch.Tensor:
    a = torch.arange(n) * (2 * math.pi / n)
    return torch.stack([r * a.cos(), r * a.sin()], 1)


@pytest.mark.parametrize("family", FAMILIES)
def test_mutual_information_is_near_zero_in_the_data_and_grows_away(family: str, two_blobs) -> None:
    x, y = two_blobs
    torch.manual_seed(0)
    model = BayesMLP(2, 2, hidden=(32, 32), family=family, likelihood="categorical", **TOY_KW[family])
    hist = fit(model, x, y, epochs=40, batch_size=50, lr=1e-2, seed=0)
    assert hist.final_loss < hist.losses[0]
    inside = model.predict(x, generator=_gen(1))
    assert isinstance(inside, ClassPrediction) and inside.probs.shape == (200, 2)
    assert accuracy(inside, y) > 0.99
    mi_in = inside.mutual_information.mean().item()
    assert mi_in < 0.02
    for r in (6.0, 12.0):  # a ring around the data: the far side of the decision boundary is unknown
        mi_far = model.predict(_circle(r), generator=_gen(2)).mutual_information.mean().item()
        assert mi_far > 5 * mi_in, (r, mi_far, mi_in)


def test_entropy_decomposition_identities_against_brute_force() -> None:
    g = _gen(3)
    logits = 3 * torch.randn(7, 50, 4, generator=g, dtype=torch.float64)
    pred = ClassPrediction.from_logits(logits)
    p = torch.softmax(logits, -1)
    mean = p.mean(0)
    total = -(mean * mean.log()).sum(-1)
    aleatoric = torch.stack([-(p[s] * p[s].log()).sum(-1) for s in range(7)]).mean(0)
    torch.testing.assert_close(pred.probs, mean)
    torch.testing.assert_close(pred.total_entropy, total)
    torch.testing.assert_close(pred.aleatoric_entropy, aleatoric)
    torch.testing.assert_close(pred.mutual_information, total - aleatoric)
    torch.testing.assert_close(pred.total_entropy, pred.aleatoric_entropy + pred.mutual_information)
    for t in (pred.total_entropy, pred.aleatoric_entropy, pred.mutual_information):
        assert (t >= 0).all() and (t <= math.log(4) + 1e-9).all()
    torch.testing.assert_close(pred.epistemic_std, p.std(0, correction=0))
    assert torch.equal(pred.label, mean.argmax(-1))
    torch.testing.assert_close(pred.confidence, mean.amax(-1))
    # agreeing samples: no epistemic part; one sample: none either
    same = ClassPrediction.from_logits(logits[:1].expand(5, -1, -1))
    assert same.mutual_information.abs().max() < 1e-12
    torch.testing.assert_close(same.total_entropy, same.aleatoric_entropy)
    one = ClassPrediction.from_logits(logits[:1].float())
    assert (one.mutual_information == 0).all() and torch.equal(one.total_entropy, one.aleatoric_entropy)
    # confident samples that disagree: all epistemic (two one-hot votes -> log 2 nats)
    votes = torch.tensor([[[50.0, -50.0]], [[-50.0, 50.0]]])
    split = ClassPrediction.from_logits(votes)
    assert split.mutual_information.item() == pytest.approx(math.log(2), abs=1e-6)
    assert split.aleatoric_entropy.item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match=r"\(n, B, C\)"):
        ClassPrediction.from_logits(torch.zeros(3, 4))


CONFIGS = [
    ("bbb", {}),
    ("bbb", {"prior": "mixture"}),
    ("mc_dropout", {"dropout": 0.3}),
    ("ensemble", {"n_members": 4}),
    ("ensemble", {"n_members": 4, "prior_scale": 1.0}),
]


@pytest.mark.parametrize(("family", "kw"), CONFIGS)
def test_classifier_predict_matches_particles(family: str, kw: dict) -> None:
    torch.manual_seed(0)
    if family == "bbb":
        kw = {**kw, "posterior_rho_init": -2.0}
    model = BayesMLP(3, 4, hidden=(16, 16), family=family, likelihood="categorical", **kw)
    x = torch.randn(64, 3)
    n = model.n_members if family == "ensemble" else 32
    pred = model.predict(x, n_samples=32, generator=_gen(7))
    logits = model.particles(n, generator=_gen(7))(x)
    assert logits.shape == (n, 64, 4)
    ref = ClassPrediction.from_logits(logits)
    for a, b in zip(
        (pred.probs, pred.total_entropy, pred.mutual_information),
        (ref.probs, ref.total_entropy, ref.mutual_information),
    ):
        torch.testing.assert_close(a, b)
    assert torch.allclose(pred.probs.sum(-1), torch.ones(64))
    assert not pred.probs.requires_grad
    # small batches take bbb's local-reparameterisation path: the same per-input law as weight draws
    small = model.predict(x[:1], n_samples=4000, generator=_gen(1))
    big = ClassPrediction.from_logits(model.particles(4000, generator=_gen(2))(x[:1]))
    torch.testing.assert_close(small.probs, big.probs, atol=0.005, rtol=0.0)
    torch.testing.assert_close(small.mutual_information, big.mutual_information, atol=1e-4, rtol=0.1)
    # the point prediction is logits
    assert model(x).shape == (64, 4)


def test_categorical_loss_is_cross_entropy_plus_kl_over_n() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(16, 3), torch.randint(0, 4, (16,))
    ens = BayesMLP(3, 4, hidden=(8,), family="ensemble", n_members=3, likelihood="categorical")
    logits = ens.particles(3)(x)  # x_scaler is the identity here
    per_member = torch.stack([F.cross_entropy(logits[k], y) for k in range(3)])
    assert ens.loss(x, y, 16).item() == pytest.approx(per_member.sum().item(), rel=1e-5)
    w = torch.zeros(3, 16)
    w[1] = 1.0
    assert ens.loss(x, y, 16, member_weights=w).item() == pytest.approx(per_member[1].item(), rel=1e-5)
    bbb = BayesMLP(3, 4, hidden=(8,), family="bbb", likelihood="categorical")
    small = bbb.loss(x, y, 100, generator=_gen(5))
    large = bbb.loss(x, y, 1000, generator=_gen(5))
    assert (small - large).item() == pytest.approx(
        bbb.kl_divergence().item() * (1 / 100 - 1 / 1000), rel=1e-4
    )
    # the categorical model has no noise parameter and never standardises its labels
    assert bbb.log_noise_std is None
    fit(bbb, x * 10 + 3, y, epochs=1, seed=0)
    assert bbb.y_scaler.mean.abs().max() == 0 and (bbb.y_scaler.std == 1).all()
    assert bbb.x_scaler.mean.abs().max() > 1


def test_fit_accepts_numpy_int_labels_and_is_seeded() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 2))
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = BayesMLP(2, 3, hidden=(8,), family="mc_dropout", likelihood="categorical")
        runs.append(fit(model, x, y, epochs=3, seed=1).losses)
        fit(model, x, y.astype(np.float64)[:, None], epochs=1, seed=1)  # (N, 1) whole-number floats
    assert runs[0] == runs[1]


def test_config_round_trip_rebuilds_a_classifier(tmp_path) -> None:
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)
    model = BayesMLP(
        16,
        3,
        hidden=(8,),
        family="bbb",
        likelihood="categorical",
        image_shape=(1, 4, 4),
        conv_channels=(4,),
        conv_stride=2,
    )
    fit(model, torch.rand(20, 16), torch.randint(0, 3, (20,)), epochs=2, seed=0)
    save_file(model.state_dict(), tmp_path / "m.safetensors")
    clone = BayesMLP(**model.config)
    clone.load_state_dict(load_file(tmp_path / "m.safetensors"))
    x = torch.rand(5, 1, 4, 4)
    a, b = model.predict(x, generator=_gen(3)), clone.predict(x, generator=_gen(3))
    assert torch.equal(a.probs, b.probs) and torch.equal(a.mutual_information, b.mutual_information)


def test_classifier_bad_input_raises_clear_errors() -> None:
    with pytest.raises(
        ValueError, match="unknown likelihood 'poisson'; allowed values: gaussian, categorical"
    ):
        BayesMLP(2, 2, likelihood="poisson")
    with pytest.raises(ValueError, match="heteroscedastic"):
        BayesMLP(2, 2, likelihood="categorical", heteroscedastic=True)
    with pytest.raises(ValueError, match="out_dim >= 2 classes"):
        BayesMLP(2, 1, likelihood="categorical")
    model = BayesMLP(2, 3, hidden=(4,), likelihood="categorical")
    x = torch.randn(4, 2)
    with pytest.raises(ValueError, match=r"class labels must be in \[0, 3\), got values in \[0, 3\]"):
        fit(model, x, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"class labels must be in \[0, 3\)"):
        model.loss(x, torch.tensor([0, -1, 2, 1]), 4)
    with pytest.raises(ValueError, match="whole numbers"):
        fit(model, x, torch.tensor([0.0, 0.5, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"class labels y must have shape \(4,\)"):
        fit(model, x, torch.zeros(4, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="different lengths"):
        fit(model, x, torch.zeros(3, dtype=torch.long))
    pred = model.predict(x)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
        accuracy(pred, torch.tensor([0, 1, 2, 5]))
    with pytest.raises(ValueError, match=r"labels must have shape \(4,\)"):
        categorical_nll(pred, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="n_bins"):
        reliability_diagram(pred, torch.tensor([0, 1, 2, 0]), n_bins=0)
    with pytest.raises(ValueError, match="ClassPrediction"):
        accuracy(BayesMLP(2, 1, hidden=(4,)).predict(x), torch.zeros(4))
    with pytest.raises(ValueError, match="at least one"):
        auroc(torch.zeros(0), torch.ones(3))
    with pytest.raises(ValueError, match="NaN"):
        auroc(torch.tensor([float("nan")]), torch.ones(3))


def _pred_from_probs(probs: torch.Tensor) -> ClassPrediction:
    return ClassPrediction.from_logits(probs.log().unsqueeze(0))


def test_accuracy_nll_and_ece_against_brute_force() -> None:
    g = _gen(4)
    probs = torch.softmax(2 * torch.randn(300, 5, generator=g, dtype=torch.float64), -1)
    y = torch.randint(0, 5, (300,), generator=g)
    pred = _pred_from_probs(probs)
    conf, label = probs.max(-1)
    assert accuracy(pred, y) == pytest.approx(float((label == y).double().mean()))
    assert categorical_nll(pred, y) == pytest.approx(
        float(-probs[torch.arange(300), y].log().mean()), rel=1e-9
    )
    diag = reliability_diagram(pred, y, n_bins=10)
    ece, counts = 0.0, []
    for b in range(10):  # the textbook loop over bins
        lo, hi = b / 10, (b + 1) / 10
        in_bin = (conf >= lo) & ((conf < hi) if b < 9 else (conf <= hi))
        counts.append(int(in_bin.sum()))
        if in_bin.any():
            gap = (label[in_bin] == y[in_bin]).double().mean() - conf[in_bin].mean()
            ece += float(in_bin.double().mean() * gap.abs())
            assert diag.confidence[b] == pytest.approx(float(conf[in_bin].mean()))
        else:
            assert math.isnan(diag.confidence[b]) and math.isnan(diag.accuracy[b])
    assert diag.counts == counts and sum(counts) == 300
    assert diag.ece == pytest.approx(ece) and expected_calibration_error(pred, y, 10) == pytest.approx(ece)
    # a calibrated predictor: labels drawn from its own probabilities -> small ECE
    y_cal = torch.multinomial(probs.float(), 1, generator=g)[:, 0]
    big = _pred_from_probs(probs.repeat(20, 1))
    y_big = torch.multinomial(probs.repeat(20, 1).float(), 1, generator=g)[:, 0]
    assert expected_calibration_error(big, y_big) < 0.03
    assert 0 <= expected_calibration_error(pred, y_cal) < 0.15


def test_auroc_matches_scikit_learn_with_ties() -> None:
    from sklearn.metrics import roc_auc_score

    g = _gen(5)
    neg = torch.randint(0, 6, (200,), generator=g).double()
    pos = torch.randint(2, 9, (150,), generator=g).double()
    ref = roc_auc_score(np.r_[np.zeros(200), np.ones(150)], np.r_[neg.numpy(), pos.numpy()])
    assert auroc(neg, pos) == pytest.approx(ref, abs=1e-12)
    assert auroc(torch.zeros(3), torch.ones(4)) == 1.0 and auroc(torch.ones(3), torch.zeros(2)) == 0.0
    assert auroc(torch.ones(3), torch.ones(2)) == 0.5


def test_readme_classification_example_runs() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("**Classification, review flags and active learning**", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict = {}
    torch.manual_seed(0)
    exec(compile(code, "README.md", "exec"), scope)
    pred, flags, ask = scope["pred"], scope["to_review"], scope["ask"]
    assert accuracy(pred, torch.as_tensor(scope["y"][1000:1400])) > 0.9
    assert flags.shape == (397,) and 0.0 < flags.float().mean() < 0.3
    assert ask.shape == (10,) and len(set(ask.tolist())) == 10
