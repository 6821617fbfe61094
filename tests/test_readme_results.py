"""The README's results block is exactly what experiments/report.py renders from committed results."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _report_module():
    spec = importlib.util.spec_from_file_location("report", ROOT / "experiments" / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_results_block_is_generated_from_committed_results() -> None:
    report = _report_module()
    readme = (ROOT / "README.md").read_text()
    assert report.current_block(readme) == report.render(), (
        "README.md's results block differs from experiments/report.py's output: "
        "run `python experiments/report.py` (never edit those numbers by hand)"
    )


def test_every_results_section_names_an_existing_source() -> None:
    report = _report_module()
    block = report.render()
    sources = [line.split("Source: `")[1].split("`")[0] for line in block.splitlines() if "Source: `" in line]
    assert len(sources) >= 5
    for src in sources:
        assert (ROOT / src).is_file(), src


def test_replace_block_refuses_a_readme_without_markers() -> None:
    report = _report_module()
    with pytest.raises(ValueError, match="results:begin"):
        report.replace_block("# no markers here\n", report.render())
