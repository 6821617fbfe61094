"""riskrl.executor: the one job runner of sweeps and benchmarks (order, errors, argument checks)."""

from __future__ import annotations

import pytest

from riskrl.executor import check_backend, run_jobs

JOBS = [(7, 2), (9, 4), (20, 6), (5, 5)]
EXPECTED = [divmod(a, b) for a, b in JOBS]


@pytest.mark.parametrize("workers", [1, 3])
def test_results_come_back_in_job_order_and_each_is_handed_on_once(workers: int) -> None:
    seen: list[tuple[int, int]] = []
    # divmod is a builtin, so spawned workers can import it by name
    assert run_jobs(divmod, JOBS, workers=workers, on_result=seen.append) == EXPECTED
    assert seen == EXPECTED


def test_a_failing_job_raises_its_own_error() -> None:
    seen: list[tuple[int, int]] = []
    with pytest.raises(ZeroDivisionError):
        run_jobs(divmod, [(4, 2), (1, 0), (9, 3)], on_result=seen.append)
    assert seen == [(2, 0)]  # the job before the failure was handed on, none after it


def test_no_jobs_is_an_empty_list() -> None:
    assert run_jobs(divmod, [], workers=4) == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"backend": "slurm"}, "unknown backend"),
        ({"workers": 0}, "workers"),
        ({"workers": 1.5}, "workers"),
        ({"workers": True}, "workers"),
        ({"connect_timeout": 0}, "connect_timeout"),
        ({"connect_timeout": float("inf")}, "connect_timeout"),
    ],
)
def test_bad_arguments_are_refused_before_any_work(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        check_backend(**{"backend": "local", **kwargs})
    if "connect_timeout" not in kwargs:
        with pytest.raises(ValueError, match=match):
            run_jobs(divmod, JOBS, **kwargs)


def test_unreachable_ray_address_is_a_connection_error() -> None:
    with pytest.raises(ConnectionError, match="cannot reach a Ray cluster"):
        check_backend("ray", address="127.0.0.1:1", connect_timeout=2.0)
