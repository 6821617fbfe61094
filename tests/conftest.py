"""Shared test configuration: a seeded global torch RNG and a quiet, single-threaded torch."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
# CI has 2 cores; one torch thread per test process keeps timings stable and avoids oversubscription.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    torch.manual_seed(0)
