"""Plots: uncertainty bands, risk_tolerance sweeps, learning and robustness curves (matplotlib, Agg-safe)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
import torch
from matplotlib.patches import Rectangle

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "plot_grid",
    "plot_learning_curves",
    "plot_robustness",
    "plot_sweep",
    "plot_training_curve",
    "plot_uncertainty",
]


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


def _pyplot() -> Any:
    """``matplotlib.pyplot``, imported on first use: importing pyplot fixes the backend, so riskrl
    asks for the headless Agg one only then, and never over a backend the user already chose."""
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt  # here, not at the top: the backend must be chosen first

    return plt


def _figure(ax: Axes | None, figsize: tuple[float, float] = (7.0, 4.5)) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax  # type: ignore[return-value]
    fig, new_ax = _pyplot().subplots(figsize=figsize)
    return fig, new_ax


def _finish(fig: Figure, path: str | Path | None) -> Path | Figure:
    if path is None:
        return fig
    plt = _pyplot()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_sweep(
    result: dict[str, Any], path: str | Path | None = None, metrics: tuple[str, ...] = ("mean", "cvar")
) -> Path | Figure:
    """Mean return and CVaR (± standard error over seeds) against risk_tolerance, one line per
    perturbation. ``result`` is ``SweepResult.to_dict()`` (or a loaded ``sweep.json``).
    Returns the saved path when ``path`` is given, otherwise the figure."""
    plt = _pyplot()
    rows = result["aggregate"]
    perts = list(dict.fromkeys(r["perturbation"] for r in rows))
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.0 * len(metrics), 4.0), squeeze=False)
    labels = {
        "mean": "mean return",
        "cvar": "CVaR (worst 10%)",
        "failure_rate": "failure rate",
        "worst": "worst return",
    }
    for ax, metric in zip(axes[0], metrics):
        for pert in perts:
            sel = sorted((r for r in rows if r["perturbation"] == pert), key=lambda r: r["risk_tolerance"])
            k = [r["risk_tolerance"] for r in sel]
            v = [r[metric] for r in sel]
            se = [r.get(f"{metric}_se", 0.0) for r in sel]
            ax.errorbar(k, v, yerr=se, marker="o", capsize=3, label=pert)
        ax.axvline(0.0, color="grey", lw=0.8, ls=":")
        ax.set_xlabel("risk_tolerance  (> 0 averse, < 0 optimistic)")
        ax.set_ylabel(labels.get(metric, metric))
        ax.grid(alpha=0.3)
    axes[0][0].legend(title="dynamics")
    cfg = result.get("config", {})
    fig.suptitle(f"{cfg.get('agent', '')} on {cfg.get('env_id', '')}: return vs risk_tolerance")
    return _finish(fig, path)


def plot_learning_curves(
    result: dict[str, Any], path: str | Path | None = None, ax: Axes | None = None
) -> Path | Figure:
    """Evaluation return against environment steps for each algorithm (mean ± se over seeds).
    ``result`` is ``BenchResult.to_dict()`` (or a loaded bench JSON)."""
    fig, ax = _figure(ax)
    algos = list(dict.fromkeys(r["algo"] for r in result["runs"]))
    for algo in algos:
        curves = [r["curve"] for r in result["runs"] if r["algo"] == algo and r["curve"]]
        if not curves:
            continue
        n = min(len(c) for c in curves)
        steps = np.array([p["timestep"] for p in curves[0][:n]])
        vals = np.array([[p["mean"] for p in c[:n]] for c in curves])
        mean = vals.mean(axis=0)
        se = vals.std(axis=0, ddof=1) / np.sqrt(len(vals)) if len(vals) > 1 else np.zeros_like(mean)
        ax.plot(steps, mean, label=f"{algo} ({len(vals)} seeds)")
        ax.fill_between(steps, mean - se, mean + se, alpha=0.2)
    cfg = result.get("config", {})
    ax.set_title(f"Learning curves on {cfg.get('env_id', '')}")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("evaluation return")
    ax.grid(alpha=0.3)
    ax.legend()
    return _finish(fig, path)


def plot_training_curve(
    episodes_csv: str | Path, path: str | Path | None = None, ax: Axes | None = None, title: str | None = None
) -> Path | Figure:
    """Training-episode returns (and a moving average) from a run's ``episodes.csv``."""
    with open(episodes_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    steps = np.array([float(r["timestep"]) for r in rows])
    returns = np.array([float(r["return"]) for r in rows])
    fig, ax = _figure(ax)
    if returns.size:
        ax.plot(steps, returns, ".", alpha=0.35, label="episode return")
        w = max(1, min(20, returns.size // 5))
        if returns.size >= w:
            smooth = np.convolve(returns, np.ones(w) / w, mode="valid")
            ax.plot(steps[w - 1 :], smooth, lw=2, label=f"moving average ({w})")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("training episode return")
    ax.set_title(title or "Training curve")
    ax.grid(alpha=0.3)
    ax.legend()
    return _finish(fig, path)


def plot_robustness(
    curves: dict[str, list[tuple[float, Any]]],
    param: str,
    path: str | Path | None = None,
    ax: Axes | None = None,
    metric: str = "mean",
) -> Path | Figure:
    """Return against a physical parameter, one line per label (e.g. per risk_tolerance).
    ``curves`` maps a label to :func:`riskrl.robustness_curve` output."""
    fig, ax = _figure(ax)
    for label, points in curves.items():
        xs = [x for x, _ in points]
        ys = [getattr(res, metric) for _, res in points]
        ax.plot(xs, ys, marker="o", label=str(label))
    ax.set_xlabel(param)
    ax.set_ylabel(f"{metric} return")
    ax.set_title(f"Robustness to {param}")
    ax.grid(alpha=0.3)
    ax.legend()
    return _finish(fig, path)


def plot_grid(
    result: Any, path: str | Path | None = None, ax: Axes | None = None, metric: str = "mean"
) -> Path | Figure:
    """A :class:`riskrl.robustness.GridResult` as a heatmap over its two parameters (cells
    annotated with the metric, the worst cell outlined), or as a curve when the grid has one."""
    names = list(result.grid)
    if len(names) > 2:
        raise ValueError(f"plot_grid draws one or two parameters, this grid has {names}")
    values = np.array([getattr(r, metric) for r in result.results])
    fig, ax = _figure(ax)
    if len(names) == 1:
        ax.plot(result.grid[names[0]], values, marker="o")
        ax.set_xlabel(names[0])
        ax.set_ylabel(f"{metric} return")
    else:
        table = values.reshape(len(result.grid[names[0]]), len(result.grid[names[1]]))
        im = ax.imshow(table, origin="lower", aspect="auto", cmap="viridis")
        ax.set_yticks(range(table.shape[0]), [f"{v:g}" for v in result.grid[names[0]]])
        ax.set_xticks(range(table.shape[1]), [f"{v:g}" for v in result.grid[names[1]]])
        ax.set_ylabel(names[0])
        ax.set_xlabel(names[1])
        for (i, j), v in np.ndenumerate(table):
            ax.text(j, i, f"{v:.0f}", ha="center", va="center", color="w", fontsize=8)
        wi, wj = np.unravel_index(int(np.argmin(table)), table.shape)
        ax.add_patch(Rectangle((wj - 0.5, wi - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
        fig.colorbar(im, ax=ax, label=f"{metric} return")
    k = result.risk_tolerance
    ax.set_title(f"{metric} return over the grid" + ("" if k is None else f" (risk_tolerance={k:g})"))
    return _finish(fig, path)
