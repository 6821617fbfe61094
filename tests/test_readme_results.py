"""The README's generated results blocks are exactly what experiments/report.py renders from committed results."""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _report_module():
    spec = importlib.util.spec_from_file_location("report", ROOT / "experiments" / "report.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("report", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


report = _report_module()


@pytest.mark.parametrize("name", list(report.BLOCKS))
def test_readme_block_is_generated_from_committed_results(name: str) -> None:
    readme = (ROOT / "README.md").read_text()
    assert report.current_block(readme, name) == report.render(name), (
        f"README.md's {name!r} results block differs from experiments/report.py's output: "
        "run `python experiments/report.py` (never edit those numbers by hand)"
    )


def test_every_results_section_names_an_existing_source() -> None:
    blocks = "\n".join(report.render(name) for name in report.BLOCKS)
    sources = [
        part.split("`")[0]
        for line in blocks.splitlines()
        if "Source: `" in line
        for part in line.split("`experiments/results/")[1:]
    ]
    assert len(sources) >= 8
    for src in sources:
        assert (ROOT / "experiments" / "results" / src).is_file(), src


def test_replace_block_refuses_a_readme_without_markers() -> None:
    with pytest.raises(ValueError, match="results:begin"):
        report.replace_block("# no markers here\n", report.render())
    with pytest.raises(ValueError, match="results:begin bsuite"):
        report.replace_block(
            "<!-- results:begin (x) -->\n<!-- results:end -->\n", report.render("bsuite"), "bsuite"
        )
    with pytest.raises(ValueError, match="unknown block"):
        report.render("nope")


def test_replace_block_touches_only_its_own_block() -> None:
    readme = (ROOT / "README.md").read_text()
    begin, end = report.markers("speed")
    swapped = report.replace_block(readme, f"{begin}\nX\n{end}", "speed")
    assert report.current_block(swapped, "speed") == f"{begin}\nX\n{end}"
    for other in set(report.BLOCKS) - {"speed"}:
        assert report.current_block(swapped, other) == report.current_block(readme, other)


def _bsuite(**changes) -> dict:
    data = json.loads((ROOT / "experiments" / "results" / "bsuite_deep_sea.json").read_text())
    for key, value in changes.items():
        data[key] = value
    return data


def test_bsuite_block_counts_solved_runs_per_size_and_scheme() -> None:
    """On hand-made runs (independent of the committed sweep's numbers): solved counts and per-seed
    logged episodes per (size, scheme), and bsuite's score as the mean of its per-seed scores."""

    def run(scheme: str, seed: int, solved: int | None, episodes: int, stop: str) -> dict:
        return {"scheme": scheme, "experiment": "deep_sea", "bsuite_id": "deep_sea/5", "size": 20,
                "seed": seed, "episodes": episodes, "solved_episode_bsuite_logged": solved,
                "stop_reason": stop}  # fmt: skip

    runs = [
        run("thompson", 0, 900, 900, "solved"),
        run("thompson", 1, 600, 600, "solved"),
        run("ucb", 0, None, 3866, "time cap"),
        run("ucb", 1, 500, 500, "solved"),
    ]
    agents = {
        f"{scheme}/seed{seed}|deep_sea": {"score": score, "sizes": {}}
        for scheme, seed, score in (
            ("thompson", 0, 0.75),
            ("thompson", 1, 1.0),
            ("ucb", 0, 0.5),
            ("ucb", 1, 1.0),
        )
    }
    data = _bsuite(runs=runs, bsuite_analysis={"pandas": "1.5.3", "bsuite": "0.3.6", "agents": agents})
    block = "\n".join(report.render_bsuite(report.Results("bsuite_deep_sea.json", data)))
    rows = [
        line for line in block.splitlines() if line.startswith("| 20 |") or line.startswith("| bsuite score")
    ]
    header = next(line for line in block.splitlines() if line.startswith("| N |"))
    cols = [c.strip() for c in header.strip("|").split("|")][1:]
    cells = dict(zip(cols, [c.strip() for c in rows[0].strip("|").split("|")][1:]))
    scores = dict(zip(cols, [c.strip() for c in rows[1].strip("|").split("|")][1:]))
    assert cells["thompson"] == "2/2: 900, 600"
    assert cells["ucb"] == "1/2: - (3866, time cap), 500"
    assert scores["thompson"] == "0.88 (2 seeds)" and scores["ucb"] == "0.75 (2 seeds)"


def test_bsuite_block_takes_more_sizes_seeds_and_experiments() -> None:
    data = _bsuite()
    runs = copy.deepcopy(data["runs"])
    extra = []
    for r in (r for r in runs if r["seed"] == 0):  # a third seed of everything, solved late
        extra.append({**r, "seed": 2, "solved_episode_bsuite_logged": 1234, "stop_reason": "solved"})
    extra.append({**runs[0], "bsuite_id": "deep_sea/20", "size": 50, "seed": 0, "episodes": 9000,
                  "solved_episode_bsuite_logged": None, "stop_reason": "episode cap"})  # fmt: skip
    # an experiment with no size (cartpole_swingup) and no bsuite score for it
    extra.append({"scheme": "thompson", "experiment": "cartpole_swingup", "bsuite_id": "cartpole_swingup/0",
                  "seed": 0, "episodes": 40, "stop_reason": "episode cap", "best_episode": 12.5})  # fmt: skip
    data["runs"] = runs + extra
    data["bsuite_analysis"]["agents"]["thompson/seed2|deep_sea"] = {"score": 0.0}
    data["growth"] = None
    block = "\n".join(report.render_bsuite(report.Results("bsuite_deep_sea.json", data)))
    # the committed sweep's thompson N = 20 run(s), now with a seed-2 copy solved at 1234
    at20 = [
        r for r in runs if r["scheme"] == "thompson" and r["experiment"] == "deep_sea" and r["size"] == 20
    ]
    logged = ", ".join(str(r["solved_episode_bsuite_logged"]) for r in at20 if r["seed"] == 0)
    n20 = len(at20) + sum(r["seed"] == 0 for r in at20)
    assert f"| 20 | {n20}/{n20}: {logged}, 1234 |" in block
    assert "| 50 | 0/1: - (9000, episode cap) | not run | not run |" in block
    # no solved criterion there: the best episode's return instead
    assert "**cartpole_swingup**" in block
    assert "| cartpole_swingup/0 | best episode 12.5 (40 episodes, episode cap) |" in block
    seed_scores = [
        v["score"]
        for k, v in data["bsuite_analysis"]["agents"].items()
        if k.startswith("thompson/") and k.endswith("|deep_sea")
    ]
    assert f"| bsuite score | {sum(seed_scores) / len(seed_scores):.2f} ({len(seed_scores)} seeds) |" in block
    seeds = sorted({r["seed"] for r in data["runs"]})
    assert f"seeds {', '.join(map(str, seeds))}" in block and "N^" not in block
    data["runs"].append(dict(runs[3]))  # a copied run is refused, not counted twice
    with pytest.raises(ValueError, match="two runs"):
        report.render_bsuite(report.Results("bsuite_deep_sea.json", data))
