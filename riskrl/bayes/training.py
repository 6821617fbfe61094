"""Training: one :class:`Trainer` (persistent Adam, shuffled minibatches, member weights, step
budget) behind the model-fitting loops; ``fit`` minimises a model's ELBO / NLL loss (Gaussian or
categorical likelihood) with it; :func:`polyak_update` moves a target network towards its source."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from riskrl.bayes.mlp import BayesMLP, as_numeric_tensor

__all__ = ["FitHistory", "Trainer", "copy_buffers", "fit", "make_adam", "polyak_update"]


@dataclass
class FitHistory:
    """Per-epoch mean training loss (the negative ELBO per example for bbb)."""

    losses: list[float] = field(default_factory=list)

    @property
    def final_loss(self) -> float:
        """Loss of the last epoch (``nan`` if nothing was trained)."""
        return self.losses[-1] if self.losses else float("nan")

    def __len__(self) -> int:
        return len(self.losses)


class Trainer:
    """Adam over a model's trainable parameters, kept across calls, with shuffled minibatches.

    It runs :func:`fit`, BayesMPC's dynamics model (online retraining and one-step-at-a-time offline
    learning) and its terminal value (through the generic :meth:`step`).

    * The optimizer persists, so its moments carry over between calls; :meth:`state_dict` /
      :meth:`load_state_dict` are the Adam optimizer's own (checkpoints keep that layout).
    * ``generator`` shuffles the rows (the permutation is drawn on the generator's device and moved
      to the model's); ``noise`` (default: ``generator``) drives the sampling inside ``model.loss``
      (bbb weights, dropout masks), so torch's global RNG is never used.
    * :meth:`train` runs epochs of minibatches with a step budget; :meth:`next_batch` hands out one
      minibatch at a time and resumes where the last call stopped (the offline path).
    * :meth:`step` is the generic ``zero_grad`` / ``backward`` / ``step`` for any loss; every step's
      loss is summed on the device (no host sync per step) until :meth:`reset_loss`.

    Args:
        model: the module to train (``model.loss(x, y, n_data, member_weights, generator)`` is used
            by :meth:`batch_step` and :meth:`train`; :meth:`step` takes any loss).
        lr, weight_decay: Adam's.
        batch_size: rows per minibatch (at most the dataset size).
        generator: shuffles the rows (needed by :meth:`next_batch` and :meth:`train` only).
        noise: the generator passed to ``model.loss`` (default ``generator``).
        max_grad_norm: clip the gradients' global norm to this before every step (``None``: never).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        batch_size: int = 64,
        generator: torch.Generator | None = None,
        noise: torch.Generator | None = None,
        max_grad_norm: float | None = None,
    ) -> None:
        if not (math.isfinite(lr) and lr > 0) or not (math.isfinite(weight_decay) and weight_decay >= 0):
            raise ValueError(f"need lr > 0 and weight_decay >= 0, got {lr} and {weight_decay}")
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or int(batch_size) < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if max_grad_norm is not None and not (math.isfinite(max_grad_norm) and max_grad_norm > 0):
            raise ValueError(f"max_grad_norm must be > 0 (or None: no clipping), got {max_grad_norm}")
        self.model = model
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError(f"{type(model).__name__} has no trainable parameters")
        self.optimizer = make_adam(self.params, lr=lr, weight_decay=weight_decay)
        self.batch_size = int(batch_size)
        self.generator = generator
        self.noise = noise
        self.max_grad_norm = max_grad_norm
        self.n_steps = 0  # gradient steps taken over the trainer's life
        self._perm: Tensor | None = None  # current epoch's row order
        self._pos = 0  # rows of it used
        self.reset_loss()

    # ------------------------------------------------------------------ loss accounting

    def reset_loss(self) -> None:
        """Start a new loss sum (:meth:`mean_loss`, :attr:`last_loss`)."""
        self._loss_sum: Tensor | None = None
        self._loss_count = 0
        self.last_loss: Tensor | None = None  # the last step's loss (detached, on the device)

    def mean_loss(self) -> Tensor:
        """Weighted mean loss of the steps since :meth:`reset_loss`, on the device (``nan`` if none)."""
        if self._loss_sum is None:
            return torch.full((), float("nan"), device=self.params[0].device)
        return self._loss_sum / self._loss_count

    # ------------------------------------------------------------------ gradient steps

    def step(self, loss: Tensor, weight: int = 1) -> Tensor:
        """One optimizer step on ``loss``: ``zero_grad``, ``backward``, ``step``. The loss enters the
        running sum with ``weight`` (e.g. the batch's rows); returns it detached."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
        self.optimizer.step()
        self.n_steps += 1
        detached = loss.detach()
        weighted = detached * weight
        self._loss_sum = weighted if self._loss_sum is None else self._loss_sum + weighted
        self._loss_count += int(weight)
        self.last_loss = detached
        return detached

    def batch_step(
        self, x: Tensor, y: Tensor, idx: Tensor, n_data: int, member_weights: Tensor | None = None
    ) -> Tensor:
        """One step of ``model.loss`` on rows ``idx`` of ``x``/``y``; ``member_weights (N, K)`` (e.g.
        bootstrap counts, one column per member) are passed as ``(K, B)`` for the batch."""
        mw = None if member_weights is None else member_weights[idx].t()
        loss = self.model.loss(x[idx], y[idx], n_data, member_weights=mw, generator=self._noise())
        return self.step(loss, weight=idx.numel())

    # ------------------------------------------------------------------ minibatches

    def reset_position(self) -> None:
        """The next minibatch starts a fresh epoch (a new permutation)."""
        self._perm, self._pos = None, 0

    def next_batch(self, n: int, *, drop_last: bool = False) -> Tensor:
        """Row indices of the next minibatch of a per-epoch random permutation of ``range(n)``.

        Resumes where the last call stopped; a new permutation is drawn when the current one is used
        up (with ``drop_last``, also when fewer than ``batch_size`` rows are left: every batch is full
        and the rows left over are skipped that epoch) or when ``n`` changed.
        """
        bs = min(self.batch_size, n)
        if self._perm is None or self._perm.shape[0] != n or self._pos + (bs if drop_last else 1) > n:
            if self.generator is None:
                raise ValueError("this trainer has no generator to shuffle minibatches with")
            perm = torch.randperm(n, generator=self.generator, device=self.generator.device)
            self._perm, self._pos = perm.to(self.params[0].device), 0
        idx = self._perm[self._pos : self._pos + bs]
        self._pos += idx.shape[0]
        return idx

    @property
    def epoch_done(self) -> bool:
        """Whether the current permutation is used up (the next batch starts a new epoch)."""
        return self._perm is None or self._pos >= self._perm.shape[0]

    def train(
        self,
        x: Tensor,
        y: Tensor,
        epochs: int,
        *,
        n_data: int | None = None,
        member_weights: Tensor | None = None,
        max_steps: int | None = None,
    ) -> Iterator[Tensor]:
        """Train ``epochs`` passes over shuffled minibatches of ``x``/``y`` (the last batch of a pass
        may be smaller), stopping after ``max_steps`` gradient steps in all (``None``: no limit).

        A generator: yields each pass's mean loss per row as a device scalar (a pass cut short by
        the budget yields the mean over the rows it saw). Each call starts a fresh permutation;
        ``n_data`` (default: the rows of ``x``) is the dataset size ``model.loss`` scales its KL by.
        """
        n = x.shape[0]
        n_data = n if n_data is None else n_data
        self.reset_position()
        taken = 0
        for _ in range(epochs):
            if max_steps is not None and taken >= max_steps:
                return
            self.reset_loss()
            while True:
                self.batch_step(x, y, self.next_batch(n), n_data, member_weights)
                taken += 1
                if self.epoch_done or (max_steps is not None and taken >= max_steps):
                    break
            yield self.mean_loss()

    # ------------------------------------------------------------------ persistence

    def state_dict(self) -> dict[str, Any]:
        """The Adam optimizer's ``state_dict`` (the layout checkpoints store)."""
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (moments, step counts, hyperparameters). Which Adam
        implementation runs (fused or not) is this machine's choice, not state: it is kept, so a
        checkpoint written by an unfused Adam (older riskrl, other torch) loads into a fused one."""
        impl = {k: self.optimizer.param_groups[0].get(k) for k in _ADAM_IMPL_KEYS}
        self.optimizer.load_state_dict(state)
        for group in self.optimizer.param_groups:
            group.update(impl)
        if impl.get("fused"):  # the fused kernel wants its step counts beside the parameters (e.g. CUDA)
            for param, st in self.optimizer.state.items():
                if isinstance(st.get("step"), Tensor):
                    st["step"] = st["step"].to(device=param.device, dtype=torch.float32)

    def _noise(self) -> torch.Generator | None:
        return self.generator if self.noise is None else self.noise


#: Adam's implementation switches: set by :func:`make_adam`, not learnt state
_ADAM_IMPL_KEYS = ("fused", "foreach")


def make_adam(params: list[Tensor], *, lr: float, weight_decay: float = 0.0) -> torch.optim.Adam:
    """Adam with torch's fused kernel where the parameters' device supports it (CPU and CUDA in modern
    torch: one pass over each tensor instead of five elementwise ops, about 5x faster per step on
    CPU), else torch's default implementation. Both compute the same update up to float rounding
    (``tests/test_training.py`` checks it), so fused and unfused runs differ only in the last bits."""
    try:
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, ValueError, TypeError):  # meta/other devices, or a torch without fused Adam
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


@torch.no_grad()
def polyak_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Move ``target``'s parameters towards ``source``'s: ``target <- (1 - tau) target + tau source``.

    ``tau = 1`` copies exactly (an interpolation could round). Buffers (input/target standardisers,
    fixed prior networks) are statistics, not learnt weights: they are copied whatever ``tau``, so
    the target always standardises its inputs like the source. Raises ``ValueError`` for ``tau``
    outside ``(0, 1]`` or modules whose parameters or buffers differ in number or shape.
    """
    if not 0.0 < float(tau) <= 1.0:
        raise ValueError(f"tau must be in (0, 1], got {tau}")
    for p_t, p in _pairs(target.parameters(), source.parameters(), "parameters"):
        if tau == 1.0:
            p_t.copy_(p)
        else:
            p_t.lerp_(p, tau)
    copy_buffers(target, source)


@torch.no_grad()
def copy_buffers(target: nn.Module, source: nn.Module) -> None:
    """Copy every buffer of ``source`` into ``target`` in place (``ValueError`` if they differ in
    number or shape)."""
    for b_t, b in _pairs(target.buffers(), source.buffers(), "buffers"):
        b_t.copy_(b)


def _pairs(targets: Iterator[Tensor], sources: Iterator[Tensor], what: str) -> list[tuple[Tensor, Tensor]]:
    """Matching tensors of two modules, checked before anything is changed."""
    t, s = list(targets), list(sources)
    if len(t) != len(s) or any(a.shape != b.shape for a, b in zip(t, s)):
        raise ValueError(f"target and source {what} differ in number or shape")
    return list(zip(t, s))


def fit(
    model: BayesMLP,
    x: Any,
    y: Any,
    *,
    epochs: int = 100,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    standardize: bool = True,
    progress_bar: bool = False,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> FitHistory:
    """Train ``model`` on raw ``x`` ``(N, in_dim)`` and ``y`` ``(N, out_dim)`` (or ``(N,)``); for a
    classifier (``likelihood="categorical"``) ``y`` holds the integer labels ``(N,)``.

    Minimises ``model.loss`` (NLL + KL / N with N the dataset size; the NLL is the model's
    likelihood: Gaussian or cross-entropy) with Adam over shuffled minibatches. ``standardize=True``
    first sets the model's input (and regression target) standardisers from the data. ``seed`` (or
    a CPU ``generator``) fixes the shuffling. The loop is a :class:`Trainer`'s. Raises
    ``ValueError`` for empty or non-finite data, mismatched lengths and bad hyper-parameters.
    """
    if not isinstance(model, BayesMLP):
        raise ValueError(f"model must be a BayesMLP, got {type(model).__name__}")
    if epochs < 0 or batch_size < 1 or not lr > 0 or weight_decay < 0:
        raise ValueError(
            f"need epochs >= 0, batch_size >= 1, lr > 0, weight_decay >= 0; got {epochs}, {batch_size}, {lr}, "
            f"{weight_decay}"
        )
    xt, yt = as_numeric_tensor(x, "x"), as_numeric_tensor(y, "y")
    if xt.shape[0] == 0 or yt.numel() == 0:
        raise ValueError("cannot fit on empty data")
    if xt.shape[0] != yt.shape[0]:
        raise ValueError(f"x and y have different lengths: {xt.shape[0]} vs {yt.shape[0]}")
    xt, yt = model._as_x(xt), model._as_y(yt, xt.shape[0])  # dtype/device, shapes, finiteness
    if standardize:
        model.fit_standardizers(xt, yt)
    if generator is None:
        generator = torch.Generator()
        if seed is not None:
            generator.manual_seed(int(seed))
        else:
            generator.seed()
    # Sampling inside the loss (weights, dropout masks) runs on the model's device with its own
    # generator, seeded from the (CPU) shuffling generator: no global RNG is used.
    noise = torch.Generator(device=xt.device).manual_seed(
        int(torch.randint(0, 2**62, (1,), generator=generator))
    )
    trainer = Trainer(
        model, lr=lr, weight_decay=weight_decay, batch_size=batch_size, generator=generator, noise=noise
    )
    history = FitHistory()
    was_training = model.training
    model.train()
    try:
        losses: Any = trainer.train(xt, yt, epochs)
        if progress_bar:
            losses = tqdm(losses, total=epochs, desc=f"fit {model.family}", unit="epoch")
        for loss in losses:
            history.losses.append(float(loss))
            if progress_bar:
                losses.set_postfix(loss=f"{history.losses[-1]:.4g}")
    finally:
        model.train(was_training)
    return history
