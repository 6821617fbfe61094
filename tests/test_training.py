"""The one Trainer (persistent Adam, minibatches, member weights, step budget) and polyak_update."""

from __future__ import annotations

import copy

import pytest
import torch

from riskrl.bayes import BayesMLP, Trainer, copy_buffers, fit, polyak_update
from riskrl.bayes.training import make_adam


def _data(n: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 2, generator=g) * 4 - 2
    return x, torch.sin(x.sum(1, keepdim=True))


def _ensemble(seed: int = 0, n_members: int = 3) -> BayesMLP:
    torch.manual_seed(seed)  # initial weights only
    return BayesMLP(2, 1, hidden=(16,), family="ensemble", n_members=n_members)


def _trainer(model: BayesMLP, seed: int = 1, batch_size: int = 8) -> Trainer:
    return Trainer(model, lr=1e-2, batch_size=batch_size, generator=torch.Generator().manual_seed(seed))


def _weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_step_budget_stops_at_exactly_n_steps() -> None:
    x, y = _data(40)  # 5 batches of 8 per epoch
    trainer = _trainer(_ensemble())
    epoch_losses = list(trainer.train(x, y, epochs=100, max_steps=7))
    assert trainer.n_steps == 7
    assert len(epoch_losses) == 2  # one whole pass (5 steps) and one cut short after 2
    first = next(iter(trainer.optimizer.state.values()))
    assert int(first["step"]) == 7
    # without a budget every pass runs to its end, the last batch smaller (40 = 3 * 12 + 4)
    trainer = Trainer(_ensemble(), lr=1e-2, batch_size=12, generator=torch.Generator().manual_seed(1))
    assert len(list(trainer.train(x, y, epochs=3))) == 3 and trainer.n_steps == 3 * 4


def test_zero_member_weight_leaves_that_member_unchanged() -> None:
    x, y = _data(40)
    model = _ensemble(n_members=3)
    before = _weights(model)
    weights = torch.ones(40, 3)
    weights[:, 1] = 0.0  # member 1 sees no data
    weights[::2, 2] = 3.0  # bootstrap-like counts for member 2
    list(_trainer(model).train(x, y, epochs=3, member_weights=weights))
    after = _weights(model)
    for b, a in zip(before, after):
        assert torch.equal(a[1], b[1])  # every parameter's member-1 slice is untouched
        assert not torch.equal(a[0], b[0]) and not torch.equal(a[2], b[2])


def test_next_batch_visits_every_row_once_per_epoch() -> None:
    trainer = _trainer(_ensemble(), batch_size=4)
    for _ in range(3):  # 12 rows in 3 full batches per epoch, a new permutation each epoch
        rows = torch.cat([trainer.next_batch(12, drop_last=True) for _ in range(3)])
        assert torch.equal(rows.sort().values, torch.arange(12))
        assert trainer.epoch_done
    epochs = [torch.cat([trainer.next_batch(12, drop_last=True) for _ in range(3)]) for _ in range(2)]
    assert not torch.equal(epochs[0], epochs[1])  # reshuffled
    # 10 rows, batches of 4: keeping the last batch gives 4 + 4 + 2; drop_last skips the 2 left over
    trainer.reset_position()
    sizes = [trainer.next_batch(10).numel() for _ in range(3)]
    assert sizes == [4, 4, 2] and trainer.epoch_done
    trainer.reset_position()
    rows = torch.cat([trainer.next_batch(10, drop_last=True) for _ in range(2)])
    assert rows.unique().numel() == 8 and trainer.next_batch(10, drop_last=True).numel() == 4


def test_resume_from_state_dict_continues_identically() -> None:
    x, y = _data(40)
    straight_model = _ensemble()
    straight = _trainer(straight_model, seed=3)
    list(straight.train(x, y, epochs=4))

    first_model = _ensemble()
    first = _trainer(first_model, seed=3)
    list(first.train(x, y, epochs=2))
    saved = (
        copy.deepcopy(first_model.state_dict()),
        copy.deepcopy(first.state_dict()),
        first.generator.get_state(),
    )
    resumed_model = _ensemble(seed=99)  # other initial weights, overwritten below
    resumed = _trainer(resumed_model, seed=0)
    resumed_model.load_state_dict(saved[0])
    resumed.load_state_dict(saved[1])
    resumed.generator.set_state(saved[2])
    list(resumed.train(x, y, epochs=2))
    for a, b in zip(_weights(straight_model), _weights(resumed_model)):
        assert torch.equal(a, b)
    # the optimizer state matters: a fresh Adam from the same weights continues differently
    fresh_model = _ensemble(seed=99)
    fresh_model.load_state_dict(saved[0])
    fresh = _trainer(fresh_model, seed=0)
    fresh.generator.set_state(saved[2])
    list(fresh.train(x, y, epochs=2))
    assert not all(torch.equal(a, b) for a, b in zip(_weights(straight_model), _weights(fresh_model)))


def test_fused_adam_computes_torchs_adam_update_up_to_rounding() -> None:
    """The fused kernel (where the device has one) follows torch's reference Adam over 200 steps of a
    real fit, weight decay included; on CPU the trainer does use it."""
    x, y = _data(40)
    runs = []
    for fused in (True, False):
        model = _ensemble()
        trainer = _trainer(model, seed=3)
        if not fused:
            trainer.optimizer = torch.optim.Adam(trainer.params, lr=1e-2, weight_decay=1e-3)
        else:
            trainer.optimizer = make_adam(trainer.params, lr=1e-2, weight_decay=1e-3)
        list(trainer.train(x, y, epochs=40))  # 200 steps
        runs.append((_weights(model), trainer.optimizer.param_groups[0]["fused"]))
    if tuple(int(v) for v in torch.__version__.split(".")[:2]) >= (2, 4):  # fused Adam on CPU since 2.4
        assert runs[0][1] is True
    assert not runs[1][1]
    for a, b in zip(runs[0][0], runs[1][0]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_unfused_adam_state_loads_into_a_fused_trainer() -> None:
    """A state written by torch's default Adam (older riskrl) restores the moments and step counts and
    keeps the loading trainer's fused kernel; the continued fit matches the unfused one to rounding."""
    x, y = _data(40)
    old_model = _ensemble()
    old = _trainer(old_model, seed=3)
    old.optimizer = torch.optim.Adam(old.params, lr=1e-2)
    list(old.train(x, y, epochs=2))
    state = copy.deepcopy(old.state_dict())
    assert not state["param_groups"][0]["fused"]
    new_model = _ensemble(seed=99)
    new_model.load_state_dict(old_model.state_dict())
    new = _trainer(new_model, seed=0)
    new.load_state_dict(state)
    assert new.optimizer.param_groups[0]["fused"] == make_adam(new.params, lr=1e-2).param_groups[0]["fused"]
    assert int(next(iter(new.optimizer.state.values()))["step"]) == 10
    for s_old, s_new in zip(old.optimizer.state.values(), new.optimizer.state.values()):
        assert torch.equal(s_old["exp_avg_sq"], s_new["exp_avg_sq"])
    new.generator.set_state(old.generator.get_state())
    list(old.train(x, y, epochs=2))
    list(new.train(x, y, epochs=2))
    for a, b in zip(_weights(old_model), _weights(new_model)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_generic_step_and_loss_accounting() -> None:
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    trainer = Trainer(model, lr=0.1)
    losses = []
    for _ in range(3):
        losses.append(trainer.step(model.weight.square().sum(), weight=2))
    assert trainer.n_steps == 3 and model.weight.item() < 1.0
    torch.testing.assert_close(trainer.mean_loss(), torch.stack(losses).mean())
    assert torch.equal(trainer.last_loss, losses[-1])
    trainer.reset_loss()
    assert trainer.last_loss is None and torch.isnan(trainer.mean_loss())
    with pytest.raises(ValueError, match="generator"):
        trainer.next_batch(4)


def test_max_grad_norm_clips_the_gradients_before_the_step() -> None:
    model = torch.nn.Linear(3, 1)
    clipped = Trainer(model, lr=1e-3, max_grad_norm=0.5)
    clipped.step(1e3 * model(torch.ones(4, 3)).sum())
    grads = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert float(torch.linalg.vector_norm(grads)) == pytest.approx(0.5, rel=1e-5)
    Trainer(model, lr=1e-3).step(1e3 * model(torch.ones(4, 3)).sum())
    assert float(torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in model.parameters()]))) > 100
    with pytest.raises(ValueError, match="max_grad_norm"):
        Trainer(model, max_grad_norm=0.0)


def test_bbb_training_uses_only_the_given_generators() -> None:
    x, y = _data(32)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = BayesMLP(2, 1, hidden=(8,), family="bbb")
        noise = torch.Generator().manual_seed(5)
        trainer = Trainer(
            model, lr=1e-2, batch_size=8, generator=torch.Generator().manual_seed(4), noise=noise
        )
        torch.manual_seed(123)
        global_before = torch.get_rng_state()
        list(trainer.train(x, y, epochs=2))
        assert torch.equal(torch.get_rng_state(), global_before)  # torch's global RNG untouched
        runs.append(_weights(model))
    assert all(torch.equal(a, b) for a, b in zip(*runs))


def test_trainer_errors() -> None:
    model = _ensemble()
    for kw in (
        {"lr": 0.0},
        {"lr": float("nan")},
        {"weight_decay": -1.0},
        {"batch_size": 0},
        {"batch_size": 2.5},
    ):
        with pytest.raises(ValueError):
            Trainer(model, **kw)
    frozen = torch.nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        Trainer(frozen)
    with pytest.raises(ValueError, match="lr > 0"):
        fit(model, *_data(8), lr=-1.0)


def test_polyak_update_interpolates_parameters_and_copies_buffers() -> None:
    source = _ensemble(seed=0)
    source.fit_standardizers(*_data(20))
    target = _ensemble(seed=1)
    t0, s0 = _weights(target), _weights(source)
    polyak_update(target, source, 0.25)
    for t, a, b in zip(_weights(target), t0, s0):
        torch.testing.assert_close(t, 0.75 * a + 0.25 * b)
    for bt, bs in zip(target.buffers(), source.buffers()):
        assert torch.equal(bt, bs)  # standardisers equal in both
    polyak_update(target, source, 1.0)
    assert all(torch.equal(t, s) for t, s in zip(_weights(target), s0))  # tau = 1 copies exactly
    other = _ensemble(seed=2)
    copy_buffers(other, source)
    assert all(torch.equal(b, s) for b, s in zip(other.buffers(), source.buffers()))
    for tau in (0.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match="tau"):
            polyak_update(target, source, tau)
    unchanged = _weights(target)
    shorter = copy.deepcopy(source)
    shorter.layers = torch.nn.ModuleList(list(shorter.layers)[:1])  # fewer parameters, same first shapes
    for wrong in (_ensemble(n_members=2), shorter):
        with pytest.raises(ValueError, match="differ in number or shape"):
            polyak_update(target, wrong, 0.5)
    assert all(torch.equal(a, b) for a, b in zip(_weights(target), unchanged))  # checked before any change
