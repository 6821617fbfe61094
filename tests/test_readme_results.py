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
    block = "\n".join(report.render_bsuite(report.Results("bsuite_deep_sea.json", _bsuite())))
    # thompson solved N = 20 on both seeds (logged episodes 900 and 600); ucb on one of two
    assert "| 20 | 2/2: 900, 600 | 1/2: - (3866, time cap), 500 |" in block
    # bsuite's score is the mean over seeds of its own analysis.score (0.75 and 1.0 for thompson)
    assert "| bsuite score | 0.88 (2 seeds) | 0.75 (2 seeds) | 0.17 (2 seeds) |" in block


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
                  "seed": 0, "episodes": 40, "stop_reason": "episode cap"})  # fmt: skip
    data["runs"] = runs + extra
    data["bsuite_analysis"]["agents"]["thompson/seed2|deep_sea"] = {"score": 0.0}
    data["growth"] = None
    block = "\n".join(report.render_bsuite(report.Results("bsuite_deep_sea.json", data)))
    assert "| 20 | 3/3: 900, 600, 1234 |" in block
    assert "| 50 | 0/1: - (9000, episode cap) | not run | not run |" in block
    assert "**cartpole_swingup**" in block and "| cartpole_swingup/0 | 0/1: - (40, episode cap) |" in block
    assert "| bsuite score | 0.58 (3 seeds) |" in block  # (0.75 + 1.0 + 0.0) / 3
    assert "seeds 0, 1, 2" in block and "N^" not in block
    data["runs"].append(dict(runs[3]))  # a copied run is refused, not counted twice
    with pytest.raises(ValueError, match="two runs"):
        report.render_bsuite(report.Results("bsuite_deep_sea.json", data))
