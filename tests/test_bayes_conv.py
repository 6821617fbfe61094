"""Bayesian conv layers: BayesConv2d (shapes, KL, zero-variance equivalence to conv2d, local
reparameterisation), the grouped ensemble conv, and conv-trunk models behind particles / predict."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from riskrl.bayes import BayesConv2d, BayesLinear, BayesMLP, ClassPrediction, EnsembleConv2d, fit

FAMILIES = ["bbb", "mc_dropout", "ensemble"]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(("stride", "padding"), [(1, 0), (1, 1), (2, 1)])
def test_bayes_conv2d_shapes(stride: int, padding: int) -> None:
    layer = BayesConv2d(3, 5, 3, stride=stride, padding=padding)
    x = torch.randn(4, 3, 9, 9)
    side = (9 + 2 * padding - 3) // stride + 1
    assert layer.train()(x).shape == (4, 5, side, side)
    assert layer.eval()(x).shape == (4, 5, side, side)
    w, b = layer.sample_weights(6)
    assert w.shape == (6, 5, 3, 3, 3) and b.shape == (6, 5)
    assert BayesConv2d(3, 5, 3, bias=False).sample_weights(2)[1].abs().max() == 0


def test_bayes_conv2d_kl_closed_form() -> None:
    layer = BayesConv2d(2, 3, 2, prior_sigma=2.0)
    with torch.no_grad():
        layer.weight_mu.fill_(0.5)
        layer.bias_mu.fill_(0.0)
        rho = math.log(math.expm1(1.0))  # softplus(rho) = 1
        layer.weight_rho.fill_(rho)
        layer.bias_rho.fill_(rho)
    per = math.log(2.0) + (1.0 + 0.25) / 8 - 0.5
    per_b = math.log(2.0) + 1.0 / 8 - 0.5
    assert layer.kl_divergence().item() == pytest.approx(24 * per + 3 * per_b, rel=1e-5)
    # the same posterior on a linear layer of the same size gives the same KL
    lin = BayesLinear(8, 3, prior_sigma=2.0)
    with torch.no_grad():
        lin.weight_mu.fill_(0.5)
        lin.bias_mu.fill_(0.0)
        lin.weight_rho.fill_(rho)
        lin.bias_rho.fill_(rho)
    assert lin.kl_divergence().item() == pytest.approx(layer.kl_divergence().item(), rel=1e-6)


def test_bayes_conv2d_equals_conv2d_at_zero_posterior_variance() -> None:
    torch.manual_seed(0)
    layer = BayesConv2d(2, 4, 3, stride=2, padding=1, posterior_rho_init=-80.0)  # sigma ~ 1e-35
    x = torch.randn(5, 2, 8, 8)
    ref = F.conv2d(x, layer.weight_mu, layer.bias_mu, stride=2, padding=1)
    torch.testing.assert_close(layer.eval()(x), ref)
    torch.testing.assert_close(layer.train()(x), ref, atol=1e-6, rtol=0)
    w, b = layer.sample_weights(3)
    assert torch.equal(w, layer.weight_mu.expand_as(w)) and torch.equal(b, layer.bias_mu.expand_as(b))
    # a whole bbb conv model with zero variance is the deterministic conv net with its means
    model = BayesMLP(
        64,
        3,
        hidden=(8,),
        family="bbb",
        likelihood="categorical",
        image_shape=(1, 8, 8),
        conv_channels=(4, 6),
        conv_stride=(1, 2),
        posterior_rho_init=-80.0,
    )
    imgs = torch.randn(7, 1, 8, 8)
    c1, c2, l1, l2 = model.layers
    h = torch.relu(F.conv2d(imgs, c1.weight_mu, c1.bias_mu, 1, 1))
    h = torch.relu(F.conv2d(h, c2.weight_mu, c2.bias_mu, 2, 1)).flatten(1)
    logits = torch.relu(h @ l1.weight_mu + l1.bias_mu) @ l2.weight_mu + l2.bias_mu
    particles = model.particles(4, generator=_gen())(imgs)
    torch.testing.assert_close(particles, logits.expand(4, -1, -1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model(imgs), logits, atol=1e-5, rtol=1e-5)
    assert model.predict(imgs).mutual_information.abs().max() < 1e-6


def test_bayes_conv2d_local_reparam_matches_weight_sampling() -> None:
    torch.manual_seed(0)
    layer = BayesConv2d(2, 2, 3, padding=1, posterior_rho_init=-1.0)
    x = torch.randn(1, 2, 4, 4)
    n = 20000
    with torch.no_grad():
        local = layer.local_reparam(x.expand(n, -1, -1, -1), _gen(1))
        w, b = layer.sample_weights(n, _gen(2))
        direct = torch.stack([F.conv2d(x, w[i], b[i], padding=1)[0] for i in range(0, n, 10)])
    torch.testing.assert_close(local.mean(0), layer.eval()(x)[0].detach(), atol=0.05, rtol=0)
    torch.testing.assert_close(local.std(0), direct.std(0), atol=0.05, rtol=0.08)


def test_ensemble_conv_is_members_side_by_side() -> None:
    torch.manual_seed(0)
    layer = EnsembleConv2d(3, 2, 4, 3, stride=2, padding=1)
    x = torch.randn(5, 2, 7, 7)
    out = layer(x)
    assert out.shape == (5, 3, 4, 4, 4)
    per_member_x = torch.randn(5, 3, 2, 7, 7)
    out2 = layer(per_member_x)
    for k in range(3):
        torch.testing.assert_close(out[:, k], F.conv2d(x, layer.weight[k], layer.bias[k], 2, 1))
        torch.testing.assert_close(
            out2[:, k], F.conv2d(per_member_x[:, k], layer.weight[k], layer.bias[k], 2, 1)
        )
    w, b = layer.select(7)
    assert torch.equal(w[4], layer.weight[1]) and torch.equal(b[6], layer.bias[0])
    prior = EnsembleConv2d(3, 2, 4, 3, trainable=False)
    assert not list(prior.parameters()) and set(prior.state_dict()) == {"weight", "bias"}
    with pytest.raises(ValueError, match="n_members"):
        EnsembleConv2d(0, 2, 2, 3)
    with pytest.raises(ValueError, match="kernel_size"):
        BayesConv2d(2, 2, 0)


def _conv_model(family: str, **kw) -> BayesMLP:
    torch.manual_seed(0)
    kw.setdefault("likelihood", "categorical")
    if family == "bbb":
        kw.setdefault("posterior_rho_init", -2.0)
    return BayesMLP(
        64,
        3,
        hidden=(8,),
        family=family,
        image_shape=(1, 8, 8),
        conv_channels=(4, 6),
        conv_stride=(1, 2),
        n_members=3,
        dropout=0.3,
        **kw,
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_conv_particles_are_frozen_batched_and_shaped(family: str) -> None:
    model = _conv_model(family)
    imgs = torch.randn(5, 1, 8, 8)
    p = model.particles(6, generator=_gen())
    out = p(imgs)
    assert out.shape == (6, 5, 3)
    assert torch.equal(out, p(imgs))  # the same draw on every call
    torch.testing.assert_close(p(imgs.flatten(1)), out)  # flat rows are the same images
    assert not torch.allclose(out[0], out[1])  # different draws differ
    # (n, B, C, H, W): row i under draw i, as for the MLPs
    per = torch.randn(6, 5, 1, 8, 8)
    out3 = p(per)
    assert out3.shape == (6, 5, 3)
    for i in (0, 4):
        torch.testing.assert_close(out3[i], p(per[i])[i], atol=1e-5, rtol=1e-5)
    # predict is the summary of the particles (bbb and mc_dropout: same generator -> same draw)
    n = 3 if family == "ensemble" else 6
    pred = model.predict(imgs, n_samples=6, generator=_gen(3))
    ref = ClassPrediction.from_logits(model.particles(n, generator=_gen(3))(imgs))
    torch.testing.assert_close(pred.probs, ref.probs)
    torch.testing.assert_close(pred.mutual_information, ref.mutual_information)
    if family == "ensemble":
        seven = model.particles(7)(imgs)
        torch.testing.assert_close(seven[5], model.particles(3)(imgs)[2])
    # gradients reach every trainable parameter through the particles
    model.particles(4, generator=_gen())(imgs).square().sum().backward()
    assert all(prm.grad is not None and prm.grad.abs().sum() > 0 for prm in model.parameters())


def test_ensemble_conv_with_randomized_prior_trains_and_predicts() -> None:
    model = _conv_model("ensemble", prior_scale=1.0)
    assert model.prior_layers is not None and len(model.prior_layers) == 4
    imgs = torch.randn(6, 1, 8, 8)
    base = _conv_model("ensemble")
    base.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("prior_layers")})
    assert not torch.allclose(model.particles(3)(imgs), base.particles(3)(imgs))
    loss = model.loss(imgs, torch.tensor([0, 1, 2, 0, 1, 2]), 6)
    loss.backward()
    assert torch.isfinite(loss)


@pytest.mark.parametrize("family", FAMILIES)
def test_conv_classifier_learns_bar_orientation(family: str) -> None:
    """Vertical vs horizontal bars at random positions in 8x8 noise: a task for convolutions."""
    g = _gen(0)
    n = 240
    y = torch.arange(n) % 2
    pos = torch.randint(0, 8, (n,), generator=g)
    imgs = 0.3 * torch.randn(n, 1, 8, 8, generator=g)
    rows = torch.arange(n)
    imgs[rows[y == 0], 0, :, pos[y == 0]] += 1.5  # vertical bars
    imgs[rows[y == 1], 0, pos[y == 1], :] += 1.5  # horizontal bars
    model = BayesMLP(
        64,
        2,
        hidden=(16,),
        family=family,
        likelihood="categorical",
        image_shape=(1, 8, 8),
        conv_channels=(4,),
        conv_stride=2,
        n_members=3,
        dropout=0.1,
        posterior_rho_init=-4.0,
    )
    torch.manual_seed(0)
    fit(model, imgs[:160], y[:160], epochs=25, batch_size=32, lr=1e-2, seed=0)
    pred = model.predict(imgs[160:], generator=_gen(1))
    assert (pred.label == y[160:]).float().mean() > 0.9


def test_conv_and_image_shape_errors() -> None:
    model = _conv_model("bbb")
    with pytest.raises(
        ValueError, match=r"x must have shape \(B, 64\) or \(B, 1, 8, 8\), got \(2, 1, 7, 8\)"
    ):
        model.predict(torch.randn(2, 1, 7, 8))
    with pytest.raises(ValueError, match=r"x must have shape \(B, 64\) or \(B, 1, 8, 8\)"):
        fit(model, torch.randn(4, 2, 8, 8), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"or \(B, 1, 8, 8\), got \(2, 3, 8\)"):
        model.particles(2)(torch.randn(2, 3, 8))
    with pytest.raises(ValueError, match=r"image_shape must be \(C, H, W\) with C \* H \* W == in_dim = 64"):
        BayesMLP(64, 3, image_shape=(1, 8, 7))
    with pytest.raises(ValueError, match=r"image_shape must be \(C, H, W\)"):
        BayesMLP(64, 3, image_shape=(8, 8))
    with pytest.raises(ValueError, match="conv_channels needs image_shape"):
        BayesMLP(64, 3, conv_channels=(4,))
    with pytest.raises(ValueError, match="one conv_stride >= 1 per conv layer"):
        BayesMLP(64, 3, image_shape=(1, 8, 8), conv_channels=(4, 4), conv_stride=(1,))
    with pytest.raises(ValueError, match="not for conv layers"):
        BayesMLP(64, 3, image_shape=(1, 8, 8), conv_channels=(4,), activation="ln_relu")
    # image_shape alone: an MLP that also accepts images
    mlp = BayesMLP(64, 3, hidden=(8,), image_shape=(1, 8, 8))
    imgs = torch.randn(3, 1, 8, 8)
    torch.testing.assert_close(mlp(imgs), mlp(imgs.flatten(1)))
    p = mlp.particles(2, generator=_gen())
    torch.testing.assert_close(p(imgs), p(imgs.flatten(1)))
