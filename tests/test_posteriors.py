"""The posterior classes behind BayesMLP: each answers draw / point / training_draw / kl_divergence,
``forward`` is the point estimate, draws are reproducible, state_dict keys stay as checkpoints have
them, and the family-neutral API (exact_members, reduce_loss, member_weights) the agents use."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from riskrl.bayes import (
    POSTERIORS,
    BayesMLP,
    BBBPosterior,
    DropoutPosterior,
    EnsemblePosterior,
    Particles,
    Prediction,
    exact_members,
)
from riskrl.bayes.posteriors import Architecture, Draw, posterior_class

FAMILIES = ["bbb", "mc_dropout", "ensemble"]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _fitted(family: str, **kw) -> tuple[BayesMLP, torch.Tensor]:
    """A small model with non-trivial standardisers (so raw <-> standardised units matter)."""
    torch.manual_seed(0)
    kw.setdefault("hidden", (8, 8))
    model = BayesMLP(3, 2, family=family, **kw)
    g = _gen(1)
    x = torch.randn(40, 3, generator=g) * 3 + 1
    y = torch.randn(40, 2, generator=g) * 5 - 2
    model.fit_standardizers(x, y)
    return model, x[:6]


def _mlp(x: torch.Tensor, model: BayesMLP, weights: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """A plain ReLU MLP with ``(in, out)`` weights, in the model's raw units: the reference forward."""
    h = (x - model.x_scaler.mean) / model.x_scaler.std
    for i, (w, b) in enumerate(weights):
        h = h @ w + b
        if i < len(weights) - 1:
            h = torch.relu(h)
    return h[:, : model.out_dim] * model.y_scaler.std + model.y_scaler.mean


def test_registry_maps_every_family_to_its_class() -> None:
    assert POSTERIORS == {"bbb": BBBPosterior, "mc_dropout": DropoutPosterior, "ensemble": EnsemblePosterior}
    for family, cls in POSTERIORS.items():
        assert posterior_class(family) is cls and cls.family == family
    with pytest.raises(ValueError, match=r"unknown family 'gp'.*bbb, mc_dropout, ensemble"):
        posterior_class("gp")
    with pytest.raises(ValueError, match="unknown family"):
        BayesMLP(3, 2, family="gp")


@pytest.mark.parametrize("family", FAMILIES)
def test_each_posterior_answers_draw_point_training_draw_and_kl(family: str) -> None:
    arch = Architecture(convs=(), conv_kernel=3, dims=(3, 5, 2), out_dim=2, in_shapes=((3,), (5,)))
    config = BayesMLP(3, 2, hidden=(5,), family=family, n_members=3).config
    post = posterior_class(family)(arch, config)
    assert len(post.layers) == 2 and post.prior_layers is None
    assert (post.dropouts is not None) == (family == "mc_dropout")
    draw = post.draw(4, _gen(0))
    assert isinstance(draw, Draw) and draw.n == 4 and len(draw.layers) == 2
    assert post.point().n == (3 if family == "ensemble" else 1)
    assert post.training_draw(_gen(0)).n == post.n_members
    kl = post.kl_divergence()
    assert kl.shape == () and (kl.item() == 0.0) == (family == "ensemble")


@pytest.mark.parametrize("family", FAMILIES)
def test_model_answers_particles_predict_and_kl(family: str) -> None:
    model, x = _fitted(family, n_members=3)
    p = model.particles(5, _gen(0))
    assert isinstance(p, Particles) and p(x).shape == (5, 6, 2)
    pred = model.predict(x, n_samples=5, generator=_gen(0))
    assert isinstance(pred, Prediction) and pred.mean.shape == (6, 2)
    assert model.kl_divergence().shape == ()


def test_bbb_forward_is_the_posterior_mean_network() -> None:
    model, x = _fitted("bbb", heteroscedastic=True)
    ref = _mlp(x, model, [(layer.weight_mu, layer.bias_mu) for layer in model.layers])
    assert torch.allclose(model(x), ref, atol=1e-5)
    # ... and the mean of the weight posterior: with sigma -> 0 every particle is that network
    with torch.no_grad():
        for layer in model.layers:
            layer.weight_rho.fill_(-200.0)
            layer.bias_rho.fill_(-200.0)
    assert torch.allclose(model.particles(3, _gen(0))(x), ref.expand(3, -1, -1), atol=1e-5)


def test_mc_dropout_forward_is_the_network_without_dropout() -> None:
    model, x = _fitted("mc_dropout", dropout=0.4)
    ref = _mlp(x, model, [(layer.weight.t(), layer.bias) for layer in model.layers])
    assert torch.allclose(model(x), ref, atol=1e-5)
    # the same network is every particle when nothing is dropped
    no_drop = BayesMLP(3, 2, hidden=(8, 8), family="mc_dropout", dropout=0.0)
    no_drop.load_state_dict(model.state_dict())
    assert torch.allclose(no_drop.particles(3, _gen(0))(x), ref.expand(3, -1, -1), atol=1e-5)


@pytest.mark.parametrize("prior_scale", [0.0, 2.0])
def test_ensemble_forward_is_the_member_average(prior_scale: float) -> None:
    model, x = _fitted("ensemble", n_members=3, prior_scale=prior_scale)
    members = []
    for k in range(3):
        out = _mlp(x, model, [(layer.weight[k], layer.bias[k]) for layer in model.layers])
        if prior_scale:
            raw = _mlp(x, model, [(layer.weight[k], layer.bias[k]) for layer in model.prior_layers])
            out = out + prior_scale * (raw - model.y_scaler.mean)  # the prior adds in standardised units
        members.append(out)
    assert torch.allclose(model.particles(3)(x), torch.stack(members), atol=1e-5)
    assert torch.allclose(model(x), torch.stack(members).mean(0), atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_particles_are_deterministic_under_a_seeded_generator(family: str) -> None:
    model, x = _fitted(family, n_members=3)
    a = model.particles(4, _gen(11))(x)
    b = model.particles(4, _gen(11))(x)
    c = model.particles(4, _gen(12))(x)
    assert torch.equal(a, b)
    # sampled families draw from the generator; an ensemble's particles are its members
    assert torch.equal(a, c) == (family == "ensemble")
    # the global RNG plays no part
    torch.manual_seed(99)
    d = model.particles(4, _gen(11))(x)
    assert torch.equal(a, d)


_SCALERS = ["x_scaler.mean", "x_scaler.std", "y_scaler.mean", "y_scaler.std"]
STATE_DICT_KEYS = {
    ("bbb", ()): [
        "log_noise_std",
        *_SCALERS,
        "layers.0.weight_mu",
        "layers.0.weight_rho",
        "layers.0.bias_mu",
        "layers.0.bias_rho",
        "layers.1.weight_mu",
        "layers.1.weight_rho",
        "layers.1.bias_mu",
        "layers.1.bias_rho",
    ],
    ("mc_dropout", (("heteroscedastic", True),)): [
        *_SCALERS,
        "layers.0.weight",
        "layers.0.bias",
        "layers.1.weight",
        "layers.1.bias",
    ],
    ("ensemble", (("prior_scale", 1.0),)): [
        "log_noise_std",
        *_SCALERS,
        "layers.0.weight",
        "layers.0.bias",
        "layers.1.weight",
        "layers.1.bias",
        "prior_layers.0.weight",
        "prior_layers.0.bias",
        "prior_layers.1.weight",
        "prior_layers.1.bias",
    ],
}


@pytest.mark.parametrize(("family", "kw"), list(STATE_DICT_KEYS))
def test_state_dict_keys_are_the_checkpointed_ones(family: str, kw: tuple) -> None:
    """The keys (and their order) existing checkpoints hold; a posterior adds none of its own."""
    model = BayesMLP(3, 2, hidden=(4,), family=family, **dict(kw))
    assert list(model.state_dict()) == STATE_DICT_KEYS[(family, kw)]
    clone = BayesMLP(3, 2, hidden=(4,), family=family, **dict(kw))
    clone.load_state_dict(model.state_dict())  # strict
    x = torch.randn(5, 3)
    assert torch.equal(clone.particles(3, _gen(0))(x), model.particles(3, _gen(0))(x))


def test_deepcopy_keeps_the_posterior_on_the_copy() -> None:
    """The posterior refers to the copy's layers (a DQN target net is a deep copy)."""
    model, x = _fitted("bbb")
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for layer in twin.layers:
            layer.weight_mu.zero_()
            layer.bias_mu.zero_()
    assert torch.allclose(twin(x), twin.y_scaler.mean.expand(6, 2))
    assert not torch.allclose(model(x), model.y_scaler.mean.expand(6, 2))


@pytest.mark.parametrize("family", FAMILIES)
def test_exact_members_and_loss_reduction(family: str) -> None:
    model, _ = _fitted(family, n_members=4)
    expected = 4 if family == "ensemble" else None
    assert model.exact_members == expected == exact_members(family, 4)
    assert model.n_members == (expected or 1)
    per = torch.arange(12.0).reshape(4, 3)
    reduced = model.reduce_loss(per)
    # ensemble: the members' batch means summed (4 * 5.5); sampled: the mean over draws and examples
    assert reduced.item() == (22.0 if family == "ensemble" else 5.5)


@pytest.mark.parametrize("family", ["bbb", "mc_dropout"])
def test_member_weights_weight_a_sampled_posteriors_examples(family: str) -> None:
    """``member_weights`` are ``(n_members, B)`` for every family; a sampled posterior has one row."""
    model, x = _fitted(family)
    y = torch.randn(6, 2)
    kl = model.kl_divergence(_gen(4)).item() / 50
    plain = model.loss(x, y, 50, generator=_gen(4)).item() - kl
    w = torch.zeros(1, 6)
    w[0, :3] = 2.0  # 2x the first half, 0x the rest: 2 * (sum of first-half losses) / 6
    weighted = model.loss(x, y, 50, member_weights=w, generator=_gen(4)).item() - kl
    ones = model.loss(x, y, 50, member_weights=torch.ones(1, 6), generator=_gen(4)).item() - kl
    assert ones == pytest.approx(plain, rel=1e-6)
    assert weighted != pytest.approx(plain, rel=1e-3)
    with pytest.raises(ValueError, match=r"member_weights must have shape \(1, 6\)"):
        model.loss(x, y, 50, member_weights=torch.ones(2, 6))


def test_training_pass_is_the_particle_pass_for_an_ensemble() -> None:
    """An ensemble trains through the same forward as its particles: the NLL is computed from them."""
    model, x = _fitted("ensemble", n_members=3, heteroscedastic=True, prior_scale=1.5)
    y = torch.randn(6, 2)
    mean, logvar = model.particles(3).raw(x)
    ys = model.y_scaler.transform(y)
    nll = 0.5 * (math.log(2 * math.pi) + logvar + (mean - ys).square() * (-logvar).exp()).sum(-1)
    assert model.loss(x, y, 10).item() == pytest.approx(nll.mean(-1).sum().item(), rel=1e-6)


def test_bbb_training_pass_samples_every_example_from_the_local_posterior() -> None:
    """bbb's training draw: per-example pre-activations N(h mu + b, h^2 sigma^2 + s_b^2) (one layer)."""
    torch.manual_seed(0)
    model = BayesMLP(2, 1, hidden=(), family="bbb", learn_noise=False, posterior_rho_init=-1.0)
    x = torch.tensor([[1.0, -2.0]]).expand(20000, 2)
    layer = model.layers[0]
    outs = model._particles_of(model._posterior.training_draw(_gen(0)))(x)[0, :, 0]
    mean = (x[0] @ layer.weight_mu + layer.bias_mu).item()
    std = (x[0].square() @ F.softplus(layer.weight_rho).square() + F.softplus(layer.bias_rho).square()).sqrt()
    assert outs.mean().item() == pytest.approx(mean, abs=0.03)
    assert outs.std().item() == pytest.approx(std.item(), rel=0.03)
