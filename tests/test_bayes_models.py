"""BayesMLP: the uncertainty interface (predict / particles) for every family, training, errors."""

from __future__ import annotations

import math

import pytest
import torch

from riskrl.bayes import BayesMLP, Particles, Prediction, fit

FAMILIES = ["bbb", "mc_dropout", "ensemble"]
EPOCHS = {"bbb": 300, "mc_dropout": 200, "ensemble": 200}


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def toy_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = _gen(123)
    x = torch.rand(200, 1, generator=g) * 5
    return x, 3 * x + 0.5 * torch.randn(200, 1, generator=g)


@pytest.mark.parametrize("family", FAMILIES)
def test_epistemic_std_grows_away_from_data(family: str, toy_data) -> None:
    torch.manual_seed(0)
    x, y = toy_data
    model = BayesMLP(1, 1, family=family)
    hist = fit(model, x, y, epochs=EPOCHS[family], batch_size=64, lr=3e-3, seed=0)
    assert len(hist) == EPOCHS[family] and hist.losses[-1] < hist.losses[0]
    inside = model.predict(torch.linspace(0.25, 4.75, 30)[:, None], generator=_gen())
    far = model.predict(torch.linspace(8, 10, 30)[:, None], generator=_gen())
    assert far.epistemic_std.mean() >= 3 * inside.epistemic_std.mean()
    # the fit is good inside the data and the learned noise is near the true 0.5
    assert (inside.mean - 3 * torch.linspace(0.25, 4.75, 30)[:, None]).square().mean().sqrt() < 0.3
    assert 0.35 < inside.aleatoric_std.mean() < 0.9
    # asking about x = 7: still finite and in the right direction
    at7 = model.predict(torch.tensor([[7.0]]), generator=_gen())
    assert 15 < at7.mean.item() < 27


def _model(family: str, **kw) -> BayesMLP:
    torch.manual_seed(0)
    kw.setdefault("hidden", (16, 16))
    if family == "bbb":
        kw.setdefault("posterior_rho_init", -2.0)
    return BayesMLP(3, 2, family=family, **kw)


CONFIGS = [
    ("bbb", {}),
    ("bbb", {"heteroscedastic": True, "prior": "mixture"}),
    ("mc_dropout", {"dropout": 0.3}),
    ("mc_dropout", {"heteroscedastic": True, "learn_noise": False}),
    ("ensemble", {"n_members": 4}),
    ("ensemble", {"n_members": 4, "prior_scale": 1.0, "heteroscedastic": True}),
]


@pytest.mark.parametrize(("family", "kw"), CONFIGS)
def test_particles_are_frozen_batched_and_shaped(family: str, kw: dict) -> None:
    model = _model(family, **kw)
    x = torch.randn(5, 3)
    p = model.particles(6, generator=_gen())
    assert isinstance(p, Particles) and p.n == 6
    out = p(x)
    assert out.shape == (6, 5, 2)
    assert torch.equal(out, p(x))  # the same draw on every call
    mean, std = p.mean_and_std(x)
    assert torch.equal(mean, out) and std.shape == (6, 5, 2) and (std >= 0).all()
    if not kw.get("heteroscedastic") and kw.get("learn_noise", True):
        assert torch.allclose(std, std[:, :1].expand_as(std))  # homoscedastic: constant noise
    assert not torch.allclose(out[0], out[1])  # different draws differ
    # (n, B, d) input: row i is evaluated under draw i
    x3 = torch.randn(6, 5, 3)
    out3 = p(x3)
    assert out3.shape == (6, 5, 2)
    for i in (0, 3):
        assert torch.allclose(out3[i], p(x3[i])[i], atol=1e-5)


@pytest.mark.parametrize(("family", "kw"), CONFIGS)
def test_predict_matches_particles(family: str, kw: dict) -> None:
    model = _model(family, **kw)
    x = torch.randn(64, 3)  # batch large enough that bbb uses the weight-sampling path
    n = model.n_members if family == "ensemble" else 32
    pred = model.predict(x, n_samples=32, generator=_gen(7))
    assert isinstance(pred, Prediction) and pred.mean.shape == (64, 2)
    means, alea = model.particles(n, generator=_gen(7)).mean_and_std(x)
    assert torch.allclose(pred.mean, means.mean(0), atol=1e-5)
    assert torch.allclose(pred.epistemic_std, means.std(0, correction=0), atol=1e-5)
    assert torch.allclose(pred.aleatoric_std, alea.square().mean(0).sqrt(), atol=1e-5)
    assert torch.allclose(pred.total_std, (pred.epistemic_std**2 + pred.aleatoric_std**2).sqrt(), atol=1e-6)
    assert not pred.mean.requires_grad


def test_bbb_small_batch_predict_has_the_particle_distribution() -> None:
    """At batch 1 bbb predict samples pre-activations (local reparameterisation): same per-input law."""
    model = _model("bbb", heteroscedastic=True)
    x = torch.randn(1, 3)
    fast = model.predict(x, n_samples=20000, generator=_gen(1))
    means, _ = model.particles(20000, generator=_gen(2)).mean_and_std(x)
    assert torch.allclose(fast.mean, means.mean(0), atol=0.02)
    assert torch.allclose(fast.epistemic_std, means.std(0), rtol=0.05)


def test_ensemble_particles_are_members_in_order() -> None:
    model = _model("ensemble", n_members=3)
    x = torch.randn(4, 3)
    every = model.particles(3)(x)
    seven = model.particles(7)(x)
    for i in range(7):
        assert torch.equal(seven[i], every[i % 3])
    assert torch.allclose(model(x), every.mean(0), atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_gradients_flow_through_particles(family: str) -> None:
    model = _model(family, heteroscedastic=True)
    p = model.particles(4)
    mean, std = p.mean_and_std(torch.randn(8, 3))
    (mean.square().sum() + std.sum()).backward()
    grads = {name: prm.grad for name, prm in model.named_parameters()}
    assert all(g is not None for g in grads.values())
    assert all(float(g.abs().sum()) > 0 for name, g in grads.items() if "rho" in name or "weight" in name)
    with torch.no_grad():
        assert not model.particles(2)(torch.randn(1, 3)).requires_grad


def test_bbb_loss_scales_kl_by_dataset_size() -> None:
    model = _model("bbb")
    x, y = torch.randn(16, 3), torch.randn(16, 2)
    torch.manual_seed(5)
    small = model.loss(x, y, n_data=100)
    torch.manual_seed(5)
    large = model.loss(x, y, n_data=1000)
    kl = model.kl_divergence()
    assert kl > 0
    assert (small - large).item() == pytest.approx(kl.item() * (1 / 100 - 1 / 1000), rel=1e-4)
    assert _model("ensemble").kl_divergence().item() == 0.0


def test_bbb_kl_is_the_gaussian_kl_of_every_weight_by_hand() -> None:
    """A 1-1-1 network (four weights): KL(N(mu, s^2) || N(0, s0^2)) summed, written out per weight."""
    torch.manual_seed(0)
    model = BayesMLP(1, 1, hidden=(1,), family="bbb", prior_sigma=0.5)
    values = [(0.3, -1.0), (-0.7, 0.5), (1.2, -2.0), (0.0, 0.2)]  # (mu, rho): w0, b0, w1, b1
    with torch.no_grad():
        for layer, (w, b) in zip(model.layers, (values[:2], values[2:])):
            layer.weight_mu.fill_(w[0])
            layer.weight_rho.fill_(w[1])
            layer.bias_mu.fill_(b[0])
            layer.bias_rho.fill_(b[1])
    expected = 0.0
    for mu, rho in values:
        s = math.log1p(math.exp(rho))  # softplus
        expected += math.log(0.5 / s) + (s * s + mu * mu) / (2 * 0.25) - 0.5
    assert model.kl_divergence().item() == pytest.approx(expected, rel=1e-6)


def test_mc_dropout_kl_is_gals_weight_decay_by_hand() -> None:
    """Gal's KL on a 2-3-1 net: l^2/2 (||W0||^2 + ||b0||^2) + l^2/2 ((1 - p) ||W1||^2 + ||b1||^2)
    (dropout only on the second layer's input); it scales with length_scale^2."""
    torch.manual_seed(0)
    model = BayesMLP(2, 1, hidden=(3,), family="mc_dropout", dropout=0.25, length_scale=1.0)
    w0, b0 = model.layers[0].weight, model.layers[0].bias
    w1, b1 = model.layers[1].weight, model.layers[1].bias
    by_hand = 0.5 * (w0.square().sum() + b0.square().sum()) + 0.5 * (
        0.75 * w1.square().sum() + b1.square().sum()
    )
    assert model.kl_divergence().item() == pytest.approx(by_hand.item(), rel=1e-6)
    longer = BayesMLP(2, 1, hidden=(3,), family="mc_dropout", dropout=0.25, length_scale=3.0)
    longer.load_state_dict(model.state_dict())
    assert longer.kl_divergence().item() == pytest.approx(9.0 * by_hand.item(), rel=1e-6)
    # the rate matters: without dropout the second layer's weights count fully
    no_drop = BayesMLP(2, 1, hidden=(3,), family="mc_dropout", dropout=0.0)
    no_drop.load_state_dict(model.state_dict())
    assert (no_drop.kl_divergence() - model.kl_divergence()).item() == pytest.approx(
        0.5 * 0.25 * w1.square().sum().item(), rel=1e-5
    )


def test_ensemble_loss_sums_members_and_accepts_bootstrap_weights() -> None:
    model = _model("ensemble", n_members=3, learn_noise=False)
    x, y = torch.randn(10, 3), torch.randn(10, 2)
    per_member = (model.particles(3)(x) - y).square().sum(-1)  # y_scaler is identity here
    assert model.loss(x, y, 10).item() == pytest.approx(per_member.mean(-1).sum().item(), rel=1e-5)
    w = torch.zeros(3, 10)
    w[0] = 1.0
    assert model.loss(x, y, 10, member_weights=w).item() == pytest.approx(
        per_member[0].mean().item(), rel=1e-5
    )


@pytest.mark.parametrize(("family", "kw"), CONFIGS)
def test_state_dict_round_trip_is_plain_tensors(family: str, kw: dict, tmp_path) -> None:
    from safetensors.torch import load_file, save_file

    model = _model(family, **kw)
    fit(model, torch.randn(40, 3) * 10 + 5, torch.randn(40, 2), epochs=2, seed=0)
    save_file(model.state_dict(), tmp_path / "m.safetensors")
    clone = BayesMLP(**model.config)
    clone.load_state_dict(load_file(tmp_path / "m.safetensors"))
    x = torch.randn(9, 3)
    a, b = model.predict(x, generator=_gen(3)), clone.predict(x, generator=_gen(3))
    assert torch.equal(a.mean, b.mean) and torch.equal(a.total_std, b.total_std)
    assert torch.equal(clone.x_scaler.mean, model.x_scaler.mean)


@pytest.mark.parametrize("family", FAMILIES)
def test_finite_for_huge_inputs_and_near_constant_targets(family: str) -> None:
    torch.manual_seed(0)
    x = 1e6 * (1 + torch.rand(64, 2))
    for y in (torch.full((64, 1), 7.0), 7.0 + 1e-9 * torch.randn(64, 1), 1e6 * torch.randn(64, 1)):
        for hetero in (False, True):
            model = BayesMLP(2, 1, hidden=(16,), family=family, heteroscedastic=hetero, n_members=3)
            hist = fit(model, x, y, epochs=5, batch_size=16, lr=1e-2, seed=0)
            assert all(torch.isfinite(torch.tensor(hist.losses)))
            pred = model.predict(torch.cat([x[:4], -1e6 * torch.ones(1, 2)]), n_samples=8)
            for t in (pred.mean, pred.epistemic_std, pred.aleatoric_std, pred.total_std):
                assert torch.isfinite(t).all()
    # without standardisation the log-variance clamp still keeps everything finite
    model = BayesMLP(2, 1, hidden=(16,), family=family, heteroscedastic=True)
    fit(model, x, torch.randn(64, 1), epochs=3, seed=0, standardize=False)
    pred = model.predict(x[:4])
    assert torch.isfinite(pred.total_std).all()


def test_forward_is_a_deterministic_point_prediction() -> None:
    for family in FAMILIES:
        model = _model(family)
        x = torch.randn(5, 3)
        out = model(x)
        assert out.shape == (5, 2) and out.requires_grad
        assert torch.equal(out, model(x))


def test_bad_input_raises_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"unknown family 'gp'; allowed values: bbb, mc_dropout, ensemble"):
        BayesMLP(1, 1, family="gp")
    with pytest.raises(ValueError, match="unknown activation"):
        BayesMLP(1, 1, activation="softsign")
    with pytest.raises(ValueError, match="hidden widths"):
        BayesMLP(1, 1, hidden=(0,))
    model = _model("bbb")
    with pytest.raises(ValueError, match=r"shape \(B, 3\)"):
        model.predict(torch.randn(4, 2))
    with pytest.raises(ValueError, match=r"shape \(B, 3\)"):
        model.predict(torch.randn(4))
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.predict(torch.tensor([[0.0, float("nan"), 1.0]]))
    with pytest.raises(ValueError, match="n_samples must be an int >= 1"):
        model.predict(torch.randn(2, 3), n_samples=0)
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        model.particles(0)
    p = model.particles(4)
    with pytest.raises(ValueError, match=r"\(4, B, 3\)"):
        p(torch.randn(3, 2, 3))
    with pytest.raises(ValueError, match="NaN or infinite"):
        p(torch.full((1, 3), float("inf")))
    with pytest.raises(ValueError, match="y must have shape"):
        model.loss(torch.randn(4, 3), torch.randn(4, 3), 10)
    with pytest.raises(ValueError, match="empty"):
        fit(model, torch.zeros(0, 3), torch.zeros(0, 2))
    with pytest.raises(ValueError, match="different lengths"):
        fit(model, torch.zeros(5, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="NaN or infinite"):
        fit(model, torch.randn(5, 3), torch.tensor([[1.0, float("inf")]] * 5))
    with pytest.raises(ValueError, match="epochs"):
        fit(model, torch.randn(5, 3), torch.randn(5, 2), lr=0.0)


def test_fit_accepts_numpy_and_1d_targets_and_is_seeded() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 2))
    y = x[:, 0] - x[:, 1]
    losses = []
    for _ in range(2):
        torch.manual_seed(0)
        model = BayesMLP(2, 1, hidden=(8,), family="mc_dropout")
        losses.append(fit(model, x, y, epochs=3, seed=1, progress_bar=True).losses)
    assert losses[0] == losses[1]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_runs_on_cuda() -> None:
    for family in FAMILIES:
        model = _model(family, heteroscedastic=True).cuda()
        x = torch.randn(10, 3, device="cuda")
        fit(model, x, torch.randn(10, 2, device="cuda"), epochs=2, seed=0)
        pred = model.predict(x, generator=torch.Generator("cuda").manual_seed(0))
        assert pred.mean.device.type == "cuda"
        assert model.particles(3)(x).device.type == "cuda"


@pytest.mark.parametrize("family", ["bbb", "mc_dropout"])
def test_fit_with_a_seed_ignores_the_global_rng(family: str) -> None:
    x = torch.linspace(0, 1, 64).unsqueeze(1)
    y = 2 * x
    weights = []
    for global_seed in (1, 2):
        torch.manual_seed(0)
        model = BayesMLP(1, 1, hidden=(8,), family=family, prior="mixture" if family == "bbb" else "gaussian")
        torch.manual_seed(global_seed)
        fit(model, x, y, epochs=3, batch_size=16, seed=7)
        weights.append([p.detach().clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*weights))


@pytest.mark.parametrize("family", FAMILIES)
def test_layer_norm_activations_make_hidden_layers_scale_invariant(family: str) -> None:
    """``ln_relu``/``ln_silu`` normalise each hidden layer: scaling a hidden layer's weights and bias
    changes nothing downstream (plain ``relu`` would scale the output), in particles and predict alike."""
    torch.manual_seed(0)
    x = torch.randn(16, 3)
    for activation in ("ln_relu", "ln_silu"):
        model = BayesMLP(3, 2, hidden=(8, 8), family=family, activation=activation, dropout=0.0)
        before = model.particles(4, generator=_gen(1))(x)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.startswith("layers.0.") and "rho" not in name:  # weights/means, not bbb's sigmas
                    p.mul_(7.0)
        after = model.particles(4, generator=_gen(1))(x)
        if family != "bbb":  # bbb adds sampled noise of the unscaled sigma: only the mean part scales
            torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)
        assert torch.isfinite(model.predict(x, generator=_gen()).mean).all()
    plain = BayesMLP(3, 2, hidden=(8, 8), family="ensemble", activation="relu")
    before = plain.particles(4)(x)
    with torch.no_grad():
        for name, p in plain.named_parameters():
            if name.startswith("layers.0."):
                p.mul_(7.0)
    assert not torch.allclose(plain.particles(4)(x), before, atol=1e-3)
