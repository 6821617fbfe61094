"""Layer-level checks: the BBB posterior is exact on a conjugate problem; KLs; dropout; ensemble."""

from __future__ import annotations

import math

import pytest
import torch

from riskrl.bayes import BayesLinear, EnsembleLinear, MCDropout


def test_bbb_matches_exact_conjugate_posterior() -> None:
    """y = w x + N(0, sn^2), w ~ N(0, s0^2): the Gaussian variational family contains the posterior."""
    g = torch.Generator().manual_seed(1)
    n, sn, s0 = 20, 0.5, 1.0
    x = torch.randn(n, 1, generator=g)
    y = 1.5 * x + sn * torch.randn(n, 1, generator=g)
    precision = 1 / s0**2 + x.square().sum() / sn**2
    post_mean = float((x * y).sum() / sn**2 / precision)
    post_std = float(precision**-0.5)

    layer = BayesLinear(1, 1, bias=False, prior_sigma=s0, posterior_rho_init=-3.0)
    opt = torch.optim.Adam(layer.parameters(), lr=0.02)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 1500)
    reps = 64  # 64 local-reparameterised samples per step: an unbiased estimate of E_q[log p(y|w)]
    xr, yr = x.repeat(reps, 1), y.repeat(reps, 1)
    layer.train()
    for _ in range(1500):
        nll = 0.5 * (layer(xr) - yr).square().sum() / (reps * sn**2)
        loss = nll + layer.kl_divergence()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    assert layer.weight_mu.item() == pytest.approx(post_mean, rel=0.1)
    assert layer.weight_sigma.item() == pytest.approx(post_std, rel=0.1)


def test_gaussian_kl_closed_form() -> None:
    layer = BayesLinear(3, 2, prior_sigma=2.0)
    with torch.no_grad():
        layer.weight_mu.fill_(0.5)
        layer.bias_mu.fill_(0.0)
        rho = math.log(math.expm1(1.0))  # softplus(rho) = 1
        layer.weight_rho.fill_(rho)
        layer.bias_rho.fill_(rho)
    per = math.log(2.0) - 0.0 + (1.0 + 0.25) / 8 - 0.5
    per_b = math.log(2.0) + 1.0 / 8 - 0.5
    assert layer.kl_divergence().item() == pytest.approx(6 * per + 2 * per_b, rel=1e-5)


def test_mixture_kl_is_unbiased_mc_estimate() -> None:
    """With sigma1 == sigma2 the mixture is a Gaussian: the MC KL must average to the closed form."""
    torch.manual_seed(0)
    gauss = BayesLinear(4, 4, prior_sigma=0.7, posterior_rho_init=-1.0)
    mix = BayesLinear(4, 4, prior="mixture", mixture_sigma1=0.7, mixture_sigma2=0.7, posterior_rho_init=-1.0)
    mix.load_state_dict(gauss.state_dict())
    mc = torch.stack([mix.kl_divergence() for _ in range(4000)]).mean()
    assert mc.item() == pytest.approx(gauss.kl_divergence().item(), rel=0.02)
    # a real scale mixture: finite and differentiable
    mix2 = BayesLinear(4, 4, prior="mixture")
    kl = mix2.kl_divergence()
    kl.backward()
    assert torch.isfinite(kl) and mix2.weight_rho.grad is not None


def test_local_reparam_moments_and_sampled_weights() -> None:
    torch.manual_seed(0)
    layer = BayesLinear(3, 2, posterior_rho_init=-1.0)
    x = torch.tensor([[1.0, -2.0, 0.5]])
    with torch.no_grad():
        samples = layer.local_reparam(x.expand(20000, 3))
        w, b = layer.sample_weights(20000)
        direct = torch.baddbmm(b, x.expand(20000, 1, 3), w)[:, 0]
    assert w.shape == (20000, 3, 2) and b.shape == (20000, 1, 2)
    for s in (samples, direct):
        assert torch.allclose(s.mean(0), layer.eval()(x)[0].detach(), atol=0.03)
    assert torch.allclose(samples.std(0), direct.std(0), rtol=0.05)


def test_layer_validation() -> None:
    with pytest.raises(ValueError, match="unknown prior 'laplace'; allowed values: gaussian, mixture"):
        BayesLinear(2, 2, prior="laplace")
    with pytest.raises(ValueError, match="mixture_pi"):
        BayesLinear(2, 2, prior="mixture", mixture_pi=1.5)
    with pytest.raises(ValueError, match="dropout probability"):
        MCDropout(1.0)
    with pytest.raises(ValueError, match="n_members"):
        EnsembleLinear(0, 2, 2)


def test_mc_dropout_stays_on_in_eval() -> None:
    d = MCDropout(0.5).eval()
    x = torch.ones(1000)
    y = d(x)
    assert 0.3 < (y == 0).float().mean() < 0.7
    masks = d.sample_masks(4, 1000, like=x)
    assert masks.shape == (4, 1, 1000) and set(masks.unique().tolist()) <= {0.0, 2.0}


def test_ensemble_layer_is_members_side_by_side() -> None:
    layer = EnsembleLinear(3, 4, 2)
    x = torch.randn(5, 4)
    out = layer(x)
    for k in range(3):
        assert torch.allclose(out[k], x @ layer.weight[k] + layer.bias[k], atol=1e-6)
    w, b = layer.select(7)
    assert torch.equal(w[4], layer.weight[1]) and torch.equal(b[6], layer.bias[0])
    prior = EnsembleLinear(3, 4, 2, trainable=False)
    assert not list(prior.parameters()) and set(prior.state_dict()) == {"weight", "bias"}
