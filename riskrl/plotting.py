"""Plots: uncertainty bands of a 1-D regressor (more plots, e.g. sweep and learning curves, may follow)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_uncertainty"]


def plot_uncertainty(
    model: Any,
    x_range: tuple[float, float],
    data: tuple[Any, Any] | None = None,
    ax: Axes | None = None,
    path: str | Path | None = None,
    *,
    n_points: int = 200,
    n_samples: int = 64,
    output: int = 0,
    n_std: float = 2.0,
) -> Figure:
    """Draw the predictive mean of a 1-input model with ``± n_std`` epistemic and total bands.

    ``model`` is anything with ``predict(x, n_samples) -> Prediction`` (e.g. a ``BayesMLP``);
    ``data=(x, y)`` adds the training points; ``path`` saves the figure. Returns the figure. Works
    with the non-interactive Agg backend.
    """
    lo, hi = float(x_range[0]), float(x_range[1])
    if not lo < hi:
        raise ValueError(f"x_range must be (low, high) with low < high, got {x_range}")
    if getattr(model, "in_dim", 1) != 1:
        raise ValueError(f"plot_uncertainty needs a model with one input, got in_dim={model.in_dim}")
    if ax is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6, 4), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.get_figure()
    xs = torch.linspace(lo, hi, n_points).unsqueeze(1)
    pred = model.predict(xs, n_samples=n_samples)
    x_np = xs[:, 0].numpy()
    mean = pred.mean[:, output].detach().cpu().numpy()
    epi = pred.epistemic_std[:, output].detach().cpu().numpy()
    tot = pred.total_std[:, output].detach().cpu().numpy()
    ax.fill_between(
        x_np, mean - n_std * tot, mean + n_std * tot, color="C0", alpha=0.2, label=f"±{n_std:g} total std"
    )
    ax.fill_between(
        x_np,
        mean - n_std * epi,
        mean + n_std * epi,
        color="C1",
        alpha=0.35,
        label=f"±{n_std:g} epistemic std",
    )
    ax.plot(x_np, mean, color="C0", lw=2, label="mean")
    if data is not None:
        dx = torch.as_tensor(data[0]).reshape(-1).cpu().numpy()
        dy = torch.as_tensor(data[1]).reshape(len(dx), -1)[:, output].cpu().numpy()
        ax.scatter(dx, dy, s=6, color="k", alpha=0.5, label="data")
    ax.set_xlim(lo, hi)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.legend(loc="best", fontsize="small")
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    return fig
