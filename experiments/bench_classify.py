"""Benchmark riskrl.bayes classifiers on scikit-learn's bundled digits (8x8 images, nothing downloaded).

For each posterior family (bbb, mc_dropout, ensemble), as an MLP and as a small conv net, against a
deterministic network of the same size (trained by the same ``fit``) and scikit-learn's
``LogisticRegression`` / ``MLPClassifier``:

- accuracy, NLL, expected calibration error and a reliability diagram;
- out-of-distribution detection (AUROC of mutual information, predictive entropy and max-softmax)
  against uniform-noise images, rotated digits, inverted digits and two digit classes held out of
  training (separate models trained on classes 0-7);
- selective prediction: a ``ReviewRule`` fitted on validation data for a 10% review rate, accuracy
  on the test predictions it does not flag;
- an active-learning curve (test accuracy vs labels, 5 seeds) for BALD, entropy and random acquisition;
- batched prediction time for 32 posterior samples of 1024 images vs the single-matmul floor.

Run:  python experiments/bench_classify.py [--quick]   (about 10 minutes at one torch thread)
Writes experiments/results/classify.{json,md}, classify_reliability.png, classify_active_learning.png.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier

from riskrl.bayes import (
    BayesMLP,
    ClassPrediction,
    ReviewRule,
    accuracy,
    acquire,
    auroc,
    categorical_nll,
    fit,
    reliability_diagram,
    uncertainty_scores,
)
from riskrl.results import code_version, write_results

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_uncertainty import timeit  # one timing helper for every benchmark

RESULTS = Path(__file__).resolve().parent / "results"
IMAGE = (1, 8, 8)
N_CLASSES = 10

CONFIG: dict[str, Any] = {
    "data": "sklearn.datasets.load_digits (1797 8x8 images, pixels / 16, no standardisation)",
    "split": {"train": 0.6, "val": 0.1, "test": 0.3, "stratified": True},
    "seeds": [0, 1, 2],
    "n_samples": 32,
    "archs": {
        "mlp": {"hidden": [64, 64]},
        "conv": {"hidden": [64], "conv_channels": [8, 16], "conv_stride": [1, 2], "conv_kernel": 3},
    },
    "families": {
        "deterministic": {"family": "ensemble", "n_members": 1},
        "bbb": {"family": "bbb", "posterior_rho_init": -5.0, "prior_sigma": 1.0},  # library defaults
        "mc_dropout": {"family": "mc_dropout", "dropout": 0.1, "length_scale": 1.0},  # library defaults
        "ensemble": {"family": "ensemble", "n_members": 5},
    },
    "fit": {"epochs": 50, "batch_size": 64, "lr": 3e-3},
    "heldout_classes": [8, 9],
    "review_rate": 0.1,
    "sklearn": {
        "LogisticRegression": {"C": 1.0, "max_iter": 2000},
        "MLPClassifier": {"hidden_layer_sizes": [64, 64], "max_iter": 500},
    },
    "active_learning": {
        "arch": "mlp",
        "family": "ensemble",
        "seeds": [0, 1, 2, 3, 4],
        "criteria": ["bald", "entropy", "random"],
        "labels": [20, 30, 40, 60, 80, 100, 125, 150, 200, 250, 300, 400, 500],
        "steps": 300,
        "batch_size": 32,
        "lr": 3e-3,
    },
    "speed": {"batch": 1024, "n_samples": 32},
}


# ------------------------------------------------------------------------------------------ data
def load() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_digits(return_X_y=True)
    return torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y, dtype=torch.int64)


def split(y: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
    """Stratified train / val / test indices."""
    g = torch.Generator().manual_seed(seed)
    parts: dict[str, list[torch.Tensor]] = {"train": [], "val": [], "test": []}
    fr = CONFIG["split"]
    for c in range(N_CLASSES):
        idx = (y == c).nonzero()[:, 0]
        idx = idx[torch.randperm(idx.numel(), generator=g)]
        n_tr, n_va = round(fr["train"] * idx.numel()), round(fr["val"] * idx.numel())
        parts["train"].append(idx[:n_tr])
        parts["val"].append(idx[n_tr : n_tr + n_va])
        parts["test"].append(idx[n_tr + n_va :])
    return {k: torch.cat(v) for k, v in parts.items()}


def ood_sets(x_test: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
    """Uniform-noise images, digits rotated by 90 degrees, inverted digits (1 - pixel)."""
    g = torch.Generator().manual_seed(1000 + seed)
    img = x_test.reshape(-1, 8, 8)
    return {
        "noise": torch.rand(x_test.shape, generator=g),
        "rotated": torch.rot90(img, 1, (1, 2)).reshape(x_test.shape),
        "inverted": 1.0 - x_test,
    }


# ---------------------------------------------------------------------------------------- models
def make_model(arch: str, family_name: str, n_classes: int, seed: int) -> BayesMLP:
    torch.manual_seed(seed)
    kw = dict(CONFIG["families"][family_name])
    a = CONFIG["archs"][arch]
    conv = {} if arch == "mlp" else {k: a[k] for k in ("conv_channels", "conv_stride", "conv_kernel")}
    return BayesMLP(
        64,
        n_classes,
        hidden=a["hidden"],
        likelihood="categorical",
        image_shape=IMAGE,
        family=kw.pop("family"),
        **conv,
        **kw,
    )


def train(model: BayesMLP, x: torch.Tensor, y: torch.Tensor, seed: int, **fit_kw: Any) -> float:
    t0 = time.perf_counter()
    kw = {**CONFIG["fit"], **fit_kw}
    fit(model, x, y, seed=seed, standardize=False, **kw)
    return time.perf_counter() - t0


def predict(model: BayesMLP, x: torch.Tensor, seed: int) -> ClassPrediction:
    pred = model.predict(x, n_samples=CONFIG["n_samples"], generator=torch.Generator().manual_seed(seed))
    assert isinstance(pred, ClassPrediction)
    return pred


def from_probs(p: np.ndarray) -> ClassPrediction:
    """A point classifier's probabilities as a (one-sample) ClassPrediction: no epistemic part."""
    return ClassPrediction.from_logits(
        torch.tensor(np.log(np.clip(p, 1e-12, 1.0)), dtype=torch.float64)[None]
    )


def sklearn_models(seed: int) -> dict[str, Any]:
    cfg = CONFIG["sklearn"]
    return {
        "sklearn LogisticRegression": LogisticRegression(**cfg["LogisticRegression"]),
        "sklearn MLPClassifier": MLPClassifier(
            hidden_layer_sizes=tuple(cfg["MLPClassifier"]["hidden_layer_sizes"]),
            max_iter=cfg["MLPClassifier"]["max_iter"],
            random_state=seed,
        ),
    }


# --------------------------------------------------------------------------------------- metrics
def quality(pred: ClassPrediction, y: torch.Tensor) -> dict[str, float]:
    return {
        "accuracy": accuracy(pred, y),
        "nll": categorical_nll(pred, y),
        "ece": reliability_diagram(pred, y, 15).ece,
    }


def ood_aurocs(
    pred_in: ClassPrediction, preds_out: dict[str, ClassPrediction]
) -> dict[str, dict[str, float]]:
    return {
        name: {
            crit: auroc(uncertainty_scores(pred_in, crit), uncertainty_scores(p, crit))
            for crit in ("bald", "entropy", "confidence")
        }
        for name, p in preds_out.items()
    }


def selective(
    val: ClassPrediction, test: ClassPrediction, y_test: torch.Tensor
) -> dict[str, dict[str, float]]:
    out = {}
    for crit in ("bald", "entropy", "confidence"):
        rule = ReviewRule.fit(val, CONFIG["review_rate"], crit)
        keep = ~rule.flag(test)
        out[crit] = {
            "review_rate": float((~keep).float().mean()),
            "accuracy_kept": float((test.label[keep] == y_test[keep]).float().mean())
            if keep.any()
            else math.nan,
        }
    return out


def run_seed(seed: int, x: torch.Tensor, y: torch.Tensor, quick: bool) -> list[dict[str, Any]]:
    idx = split(y, seed)
    xtr, ytr, xva, _, xte, yte = (
        x[idx["train"]],
        y[idx["train"]],
        x[idx["val"]],
        y[idx["val"]],
        x[idx["test"]],
        y[idx["test"]],
    )
    held = CONFIG["heldout_classes"]
    known_tr = ~torch.isin(ytr, torch.tensor(held))
    known_te = ~torch.isin(yte, torch.tensor(held))
    oods = ood_sets(xte, seed)
    rows = []
    fit_kw = {"epochs": 10} if quick else {}
    for arch in CONFIG["archs"]:
        for fam in CONFIG["families"]:
            model = make_model(arch, fam, N_CLASSES, seed)
            secs = train(model, xtr, ytr, seed, **fit_kw)
            test = predict(model, xte, seed)
            row = {"model": f"{arch} {fam}", "arch": arch, "family": fam, "seed": seed, "fit_s": secs}
            row.update(quality(test, yte))
            row["selective"] = selective(predict(model, xva, seed), test, yte)
            row["ood"] = ood_aurocs(test, {k: predict(model, v, seed) for k, v in oods.items()})
            # held-out classes: a second model that never saw digits 8 and 9
            sub = make_model(arch, fam, N_CLASSES - len(held), seed)
            train(sub, xtr[known_tr], ytr[known_tr], seed, **fit_kw)
            row["ood"].update(
                ood_aurocs(
                    predict(sub, xte[known_te], seed), {"heldout_classes": predict(sub, xte[~known_te], seed)}
                )
            )
            row["_test_pred"] = test
            rows.append(row)
            print(
                f"seed {seed} {row['model']:<22} acc {row['accuracy']:.4f} nll {row['nll']:.3f} "
                f"ece {row['ece']:.3f} ood-MI noise {row['ood']['noise']['bald']:.3f} "
                f"held {row['ood']['heldout_classes']['bald']:.3f} ({secs:.1f}s)",
                flush=True,
            )
    for name, clf in sklearn_models(seed).items():
        t0 = time.perf_counter()
        clf.fit(xtr.numpy(), ytr.numpy())
        secs = time.perf_counter() - t0
        test = from_probs(clf.predict_proba(xte.numpy()))
        row = {"model": name, "arch": "sklearn", "family": name, "seed": seed, "fit_s": secs}
        row.update(quality(test, yte))
        row["selective"] = selective(from_probs(clf.predict_proba(xva.numpy())), test, yte)
        row["ood"] = ood_aurocs(test, {k: from_probs(clf.predict_proba(v.numpy())) for k, v in oods.items()})
        sub = sklearn_models(seed)[name].fit(xtr[known_tr].numpy(), ytr[known_tr].numpy())
        row["ood"].update(
            ood_aurocs(
                from_probs(sub.predict_proba(xte[known_te].numpy())),
                {"heldout_classes": from_probs(sub.predict_proba(xte[~known_te].numpy()))},
            )
        )
        row["_test_pred"] = test
        row["_y"] = yte
        rows.append(row)
        print(
            f"seed {seed} {name:<22} acc {row['accuracy']:.4f} nll {row['nll']:.3f} ece {row['ece']:.3f}",
            flush=True,
        )
    for row in rows:
        row["_y"] = yte
    return rows


# -------------------------------------------------------------------------------- active learning
def active_learning(x: torch.Tensor, y: torch.Tensor, quick: bool) -> dict[str, Any]:
    cfg = CONFIG["active_learning"]
    labels = cfg["labels"][:5] if quick else cfg["labels"]
    seeds = cfg["seeds"][:2] if quick else cfg["seeds"]
    curves: dict[str, list[list[float]]] = {c: [] for c in cfg["criteria"]}
    for seed in seeds:
        idx = split(y, seed)
        pool_x, pool_y = x[idx["train"]], y[idx["train"]]
        xte, yte = x[idx["test"]], y[idx["test"]]
        g = torch.Generator().manual_seed(seed)
        start = torch.randperm(pool_x.shape[0], generator=g)[: labels[0]]
        for crit in cfg["criteria"]:
            labelled = start.clone()
            accs = []
            model = None
            for step, n_labels in enumerate(labels):
                if model is not None and n_labels > labelled.numel():
                    mask = torch.ones(pool_x.shape[0], dtype=torch.bool)
                    mask[labelled] = False
                    rest = mask.nonzero()[:, 0]
                    pick = acquire(
                        model, pool_x[rest], n_labels - labelled.numel(), crit, seed=seed * 1000 + step
                    )
                    labelled = torch.cat([labelled, rest[pick]])
                model = make_model(cfg["arch"], cfg["family"], N_CLASSES, seed)
                epochs = math.ceil(cfg["steps"] * cfg["batch_size"] / labelled.numel())
                train(
                    model,
                    pool_x[labelled],
                    pool_y[labelled],
                    seed,
                    epochs=epochs,
                    batch_size=cfg["batch_size"],
                    lr=cfg["lr"],
                )
                accs.append(accuracy(predict(model, xte, seed), yte))
            curves[crit].append(accs)
            print(
                f"AL seed {seed} {crit:<8} " + " ".join(f"{n}:{a:.3f}" for n, a in zip(labels, accs)),
                flush=True,
            )
    mean = {c: np.mean(v, 0).tolist() for c, v in curves.items()}
    std = {c: np.std(v, 0).tolist() for c, v in curves.items()}
    return {"labels": labels, "seeds": seeds, "per_seed": curves, "mean": mean, "std": std}


# ---------------------------------------------------------------------------------------- speed
def floor_fn(arch: str, n: int, batch: int) -> Any:
    """One deterministic forward of ``n * batch`` images through plain weights of the same shapes."""
    a = CONFIG["archs"][arch]
    x = torch.rand(n * batch, *IMAGE)
    convs, c = [], 1
    for out_c in a.get("conv_channels", []):
        convs.append((torch.randn(out_c, c, 3, 3) / 3, torch.zeros(out_c)))
        c = out_c
    strides = a.get("conv_stride", [])
    dims = [64 if not convs else None, *a["hidden"], N_CLASSES]
    if convs:
        side = 8
        for s in strides:
            side = (side + 2 - 3) // s + 1
        dims[0] = c * side * side
    lins = [(torch.randn(i, o) / i**0.5, torch.zeros(o)) for i, o in itertools.pairwise(dims)]

    def run() -> torch.Tensor:
        with torch.no_grad():
            h = x
            for (w, b), s in zip(convs, strides):
                h = torch.relu(F.conv2d(h, w, b, s, 1))
            h = h.flatten(1)
            for i, (w, b) in enumerate(lins):
                h = torch.addmm(b, h, w)
                if i < len(lins) - 1:
                    h = torch.relu(h)
            return h

    return run


def bench_speed(quick: bool) -> list[dict[str, Any]]:
    cfg = CONFIG["speed"]
    rows = []
    x = torch.rand(cfg["batch"], 64)
    for arch in CONFIG["archs"]:
        for fam in ("bbb", "mc_dropout", "ensemble"):
            model = make_model(arch, fam, N_CLASSES, 0).eval()
            n = model.n_members if fam == "ensemble" else cfg["n_samples"]
            t_pred = timeit(lambda m=model: m.predict(x, n_samples=cfg["n_samples"]), 0.1 if quick else 0.5)
            t_floor = timeit(floor_fn(arch, n, cfg["batch"]), 0.1 if quick else 0.5)
            rows.append(
                {
                    "arch": arch,
                    "family": fam,
                    "n_samples": n,
                    "batch": cfg["batch"],
                    "predict_ms": 1e3 * t_pred,
                    "floor_ms": 1e3 * t_floor,
                    "ratio": t_pred / t_floor,
                }
            )
            print(f"speed {arch} {fam}: {1e3 * t_pred:.2f} ms vs floor {1e3 * t_floor:.2f} ms", flush=True)
    return rows


# -------------------------------------------------------------------------------------- summary
def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in dict.fromkeys(r["model"] for r in rows):
        rs = [r for r in rows if r["model"] == name]

        def ms(vals: list[float]) -> list[float]:
            return [float(np.mean(vals)), float(np.std(vals))]

        s: dict[str, Any] = {k: ms([r[k] for r in rs]) for k in ("accuracy", "nll", "ece", "fit_s")}
        s["ood"] = {
            ood: {crit: ms([r["ood"][ood][crit] for r in rs]) for crit in rs[0]["ood"][ood]}
            for ood in rs[0]["ood"]
        }
        s["selective"] = {
            crit: {k: ms([r["selective"][crit][k] for r in rs]) for k in rs[0]["selective"][crit]}
            for crit in rs[0]["selective"]
        }
        pooled = ClassPrediction.from_logits(
            torch.cat([r["_test_pred"].probs.double().log() for r in rs])[None]
        )
        diag = reliability_diagram(pooled, torch.cat([r["_y"] for r in rs]), 15)
        s["reliability"] = {
            "edges": diag.edges,
            "confidence": diag.confidence,
            "accuracy": diag.accuracy,
            "counts": diag.counts,
        }
        out[name] = s
    return out


def targets(summary: dict[str, Any], al: dict[str, Any], speed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    res = []
    for arch in CONFIG["archs"]:
        det = summary[f"{arch} deterministic"]
        for fam in ("bbb", "mc_dropout", "ensemble"):
            s = summary[f"{arch} {fam}"]
            gap = 100 * (s["accuracy"][0] - det["accuracy"][0])
            res.append(
                {
                    "target": f"{arch} {fam}: accuracy within 1 point of the deterministic net, lower NLL and ECE",
                    "value": f"acc {100 * s['accuracy'][0]:.2f} vs {100 * det['accuracy'][0]:.2f} ({gap:+.2f} pts); "
                    f"NLL {s['nll'][0]:.3f} vs {det['nll'][0]:.3f}; ECE {s['ece'][0]:.3f} vs {det['ece'][0]:.3f}",
                    "met": bool(gap >= -1.0 and s["nll"][0] < det["nll"][0] and s["ece"][0] < det["ece"][0]),
                }
            )
            noise = s["ood"]["noise"]["bald"][0]
            held, held_det = (
                s["ood"]["heldout_classes"]["bald"][0],
                det["ood"]["heldout_classes"]["confidence"][0],
            )
            res.append(
                {
                    "target": f"{arch} {fam}: OOD AUROC of MI >= 0.9 on noise, above the deterministic max-softmax "
                    "AUROC on held-out classes",
                    "value": f"noise {noise:.3f}; held-out classes {held:.3f} vs {held_det:.3f}",
                    "met": bool(noise >= 0.9 and held > held_det),
                }
            )
    labels, mean = al["labels"], al["mean"]
    if 500 in labels:
        ref = mean["random"][labels.index(500)]
        reach = next((n for n, a in zip(labels, mean["bald"]) if a >= ref), None)
        res.append(
            {
                "target": "BALD reaches random acquisition's accuracy at 500 labels with at most 250 labels",
                "value": f"random@500 {100 * ref:.2f}%; BALD reaches it at {reach} labels "
                f"(BALD@250 {100 * mean['bald'][labels.index(250)]:.2f}%)",
                "met": bool(reach is not None and reach <= 250),
            }
        )
    for r in speed:
        res.append(
            {
                "target": f"{r['arch']} {r['family']}: predict {r['n_samples']} samples x {r['batch']} images within 2x "
                "of the single-matmul floor",
                "value": f"{r['predict_ms']:.2f} ms vs {r['floor_ms']:.2f} ms ({r['ratio']:.2f}x)",
                "met": bool(r["ratio"] <= 2.0),
            }
        )
    return res


# ------------------------------------------------------------------------------------------ plots
def figures(summary: dict[str, Any], al: dict[str, Any]) -> dict[str, Any]:
    """The reliability diagrams and the active-learning curve, as matplotlib figures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in summary if not n.startswith("sklearn")] + [
        n for n in summary if n.startswith("sklearn")
    ]
    cols = 5
    rows_n = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(3.2 * cols, 3.2 * rows_n), squeeze=False)
    for ax, name in zip(axes.flat, names):
        rel = summary[name]["reliability"]
        edges = np.array(rel["edges"])
        centers, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
        acc = np.nan_to_num(np.array(rel["accuracy"], dtype=float))
        ax.bar(centers, acc, width=width, edgecolor="k", linewidth=0.5, label="accuracy")
        ax.plot([0, 1], [0, 1], "r--", linewidth=1, label="calibrated")
        ax.set_title(f"{name}\nECE {summary[name]['ece'][0]:.3f}", fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence", fontsize=8)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    axes[0, 0].set_ylabel("accuracy")
    fig.suptitle("digits: reliability diagrams (test sets of all seeds pooled)")
    fig.tight_layout()
    figs = {"reliability": fig}

    fig, ax = plt.subplots(figsize=(6, 4))
    for crit in al["mean"]:
        m, s = np.array(al["mean"][crit]), np.array(al["std"][crit])
        ax.plot(al["labels"], 100 * m, marker="o", markersize=3, label=crit)
        ax.fill_between(al["labels"], 100 * (m - s), 100 * (m + s), alpha=0.2)
    ax.set_xscale("log")
    ticks = [n for n in al["labels"] if n in (20, 40, 60, 100, 150, 250, 500)]
    ax.set_xticks(ticks, [str(n) for n in ticks])
    ax.minorticks_off()
    ax.set_xlabel("labels")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(
        f"active learning on digits ({CONFIG['active_learning']['family']} MLP, {len(al['seeds'])} seeds)"
    )
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    figs["active_learning"] = fig
    return figs


def to_markdown(res: dict[str, Any]) -> str:
    s = res["summary"]
    pm = lambda v, k=1.0, f=".2f": f"{k * v[0]:{f}} ± {k * v[1]:{f}}"  # noqa: E731
    lines = [
        "# Bayesian classifiers on digits",
        "",
        f"`experiments/bench_classify.py`, code `{str(res['code_version_at_start']['git_commit'])[:10]}` at the "
        f"start of the run{' + uncommitted changes' if res['code_version_at_start']['git_dirty'] else ''} "
        f"(provenance in classify.json), torch {torch.__version__}, scikit-learn {res['sklearn']}, "
        f"{res['threads']} torch thread(s), {res['runtime_s'] / 60:.1f} min{' (QUICK run)' if res['quick'] else ''}. "
        f"scikit-learn's bundled digits, {CONFIG['data']}; stratified 60/10/30 train/val/test split per seed, "
        f"seeds {CONFIG['seeds']} (mean ± std over seeds). Nets: MLP {CONFIG['archs']['mlp']['hidden']}, conv "
        f"{CONFIG['archs']['conv']['conv_channels']} channels (3x3, strides {CONFIG['archs']['conv']['conv_stride']}) + "
        f"{CONFIG['archs']['conv']['hidden']}; all trained by the same `fit` ({CONFIG['fit']}); 'deterministic' is "
        "the same net as a one-member ensemble. 32 posterior samples (ensembles: their 5 members).",
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    lines += [f"| {t['target']} | {t['value']} | {'yes' if t['met'] else '**no**'} |" for t in res["targets"]]
    lines += [
        "",
        "## In-distribution quality and selective prediction",
        "",
        "Selective: a `ReviewRule` fitted on the validation split for a 10% review rate; accuracy on the test "
        "points it does not flag (criterion: mutual information for the Bayesian nets, max-softmax otherwise).",
        "",
        "| model | accuracy (%) | NLL | ECE | selective accuracy (%) | test review rate | fit (s) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, v in s.items():
        crit = "bald" if any(f in name for f in ("bbb", "mc_dropout", " ensemble")) else "confidence"
        sel = v["selective"][crit]
        lines.append(
            f"| {name} | {pm(v['accuracy'], 100)} | {pm(v['nll'], f='.3f')} | {pm(v['ece'], f='.3f')} | "
            f"{pm(sel['accuracy_kept'], 100)} | {pm(sel['review_rate'], f='.3f')} | {v['fit_s'][0]:.1f} |"
        )
    lines += [
        "",
        "## Out-of-distribution detection (AUROC, in = test digits)",
        "",
        "MI = mutual information (epistemic), H = predictive entropy, MSP = 1 - max softmax. Held-out classes: "
        f"models trained without digits {CONFIG['heldout_classes']}, which are then the OOD set.",
        "",
        "| model | noise MI | noise H | rotated MI | rotated H | inverted MI | inverted H | held-out MI | held-out H | held-out MSP |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, v in s.items():
        o = v["ood"]
        cells = [
            f"{o[k][c][0]:.3f}"
            for k, c in (
                ("noise", "bald"),
                ("noise", "entropy"),
                ("rotated", "bald"),
                ("rotated", "entropy"),
                ("inverted", "bald"),
                ("inverted", "entropy"),
                ("heldout_classes", "bald"),
                ("heldout_classes", "entropy"),
                ("heldout_classes", "confidence"),
            )
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "(Point classifiers have MI = 0 everywhere: their MI AUROC is 0.5 by construction.)", ""]
    al = res["active_learning"]
    if not al["mean"]:
        return "\n".join(lines)
    lines += [
        "## Active learning",
        "",
        f"{CONFIG['active_learning']['family']} MLP retrained from scratch at every size "
        f"({CONFIG['active_learning']['steps']} Adam steps of batch {CONFIG['active_learning']['batch_size']}), "
        f"pool = the training split, start = {al['labels'][0]} random labels, test accuracy (%), "
        f"mean ± std over seeds {al['seeds']}.",
        "",
        "| labels | " + " | ".join(al["mean"]) + " |",
        "|---:|" + "---:|" * len(al["mean"]),
    ]
    for i, n in enumerate(al["labels"]):
        lines.append(
            f"| {n} | "
            + " | ".join(f"{100 * al['mean'][c][i]:.1f} ± {100 * al['std'][c][i]:.1f}" for c in al["mean"])
            + " |"
        )
    lines += [
        "",
        "## Prediction speed",
        "",
        "`model.predict` (validation, posterior draws, forward, the entropy decomposition) vs the floor: one "
        "deterministic forward of samples x batch images through plain weights of the same shapes. mc_dropout "
        "can beat the floor: its first layer has no dropout on its input, so it runs once for all samples.",
        "",
        "| net | family | samples | batch | predict (ms) | floor (ms) | ratio |",
    ]
    lines += ["|---|---|---:|---:|---:|---:|---:|"]
    for r in res["speed"]:
        lines.append(
            f"| {r['arch']} | {r['family']} | {r['n_samples']} | {r['batch']} | {r['predict_ms']:.2f} | "
            f"{r['floor_ms']:.2f} | {r['ratio']:.2f} |"
        )
    lines += [
        "",
        "![reliability](classify_reliability.png)",
        "",
        "![active learning](classify_active_learning.png)",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer epochs, seeds and labels (smoke test)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--skip", nargs="*", default=[], choices=["quality", "al", "speed"], help="parts to skip")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    at_start = code_version()  # riskrl.results records the version again when it writes
    x, y = load()
    seeds = CONFIG["seeds"][:1] if args.quick else CONFIG["seeds"]
    rows = [] if "quality" in args.skip else [r for s in seeds for r in run_seed(s, x, y, args.quick)]
    summary = summarise(rows) if rows else {}
    al = (
        active_learning(x, y, args.quick)
        if "al" not in args.skip
        else {"labels": [], "mean": {}, "std": {}, "seeds": []}
    )
    speed = bench_speed(args.quick) if "speed" not in args.skip else []
    config = {
        **CONFIG,
        "seeds_run": seeds,
        "quick": args.quick,
        "skipped": args.skip,
        "threads": args.threads,
    }
    res: dict[str, Any] = {
        "code_version_at_start": at_start,
        "sklearn": sklearn.__version__,
        "threads": torch.get_num_threads(),
        "quick": args.quick,
        "summary": summary,
        "per_seed": [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows],
        "active_learning": al,
        "speed": speed,
    }
    res["targets"] = targets(summary, al, speed) if summary else []
    res["runtime_s"] = time.perf_counter() - t0
    figs = figures(summary, al) if summary and al["mean"] else {}
    md = to_markdown(res)
    paths = write_results(args.out, "classify", res, config=config, markdown=md, figures=figs)
    for fig in figs.values():
        fig.clf()
    print(md)
    for t in res["targets"]:
        print(f"[{'MET' if t['met'] else 'NOT MET'}] {t['target']}: {t['value']}")
    print("wrote", ", ".join(str(p) for p in paths.values()))


if __name__ == "__main__":
    main()
