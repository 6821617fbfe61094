"""Training: ``fit`` minimises the model's ELBO / NLL loss (Gaussian or categorical likelihood) with Adam."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from riskrl.bayes.mlp import BayesMLP, as_numeric_tensor

__all__ = ["FitHistory", "fit"]


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
    first sets the model's input (and regression target) standardisers from the data. ``seed`` (or a CPU ``generator``) fixes the shuffling. Raises ``ValueError`` for empty or
    non-finite data, mismatched lengths and bad hyper-parameters.
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
    n_data = xt.shape[0]
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
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    history = FitHistory()
    bs = min(batch_size, n_data)
    epochs_iter: Any = range(epochs)
    if progress_bar:
        from tqdm.auto import tqdm

        epochs_iter = tqdm(epochs_iter, desc=f"fit {model.family}", unit="epoch")
    was_training = model.training
    model.train()
    try:
        for _ in epochs_iter:
            perm = torch.randperm(n_data, generator=generator).to(xt.device)
            total = 0.0
            for start in range(0, n_data, bs):
                idx = perm[start : start + bs]
                loss = model.loss(xt[idx], yt[idx], n_data, generator=noise)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * idx.numel()
            history.losses.append(total / n_data)
            if progress_bar:
                epochs_iter.set_postfix(loss=f"{history.losses[-1]:.4g}")
    finally:
        model.train(was_training)
    return history
