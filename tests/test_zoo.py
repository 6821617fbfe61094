"""riskrl agents inside rl-zoo's own harness: rl_zoo3 train / enjoy / plot_train and an Optuna study.

rl_zoo3 is the optional ``zoo`` extra; ``make`` installs it into .venv (see the Makefile's ZOO
lines), and without it these tests skip.
"""

from __future__ import annotations

import ast
import csv
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rl_zoo3", reason="rl_zoo3 (the zoo extra) is not installed; `make venv` installs it")
pytest.importorskip("optuna", reason="optuna (the zoo extra) is not installed; `make venv` installs it")

from riskrl.agents import load_agent
from riskrl.benchmark import SB3_ZOO

TINY_DQN = "learning_starts:50 hidden:[16,16] n_members:3"
TINY_MPC = (
    "learning_starts:30 retrain_interval:30 horizon:5 population:24 n_elites:4 cem_iterations:2 "
    "n_particles:3 train_epochs:2"
)

SCRIPT = r"""
import sys
import matplotlib
matplotlib.use("Agg")
from matplotlib import pyplot as plt
from riskrl.zoo import main

steps = []
for line in sys.stdin.read().strip().splitlines():
    args = line.split()
    if args[0] == "plot_train":
        png = args.pop() + ".png"
        plt.show = lambda png=png: (steps.append(len(plt.gca().lines)), plt.savefig(png))
    main(args)
print("PLOT_LINES", steps)
"""


def _zoo(cwd: Path, *commands: str, timeout: float = 240) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        input="\n".join(commands),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _monitor_lengths(folder: Path) -> list[int]:
    with open(folder / "0.monitor.csv") as fh:
        fh.readline()  # Monitor's JSON header
        return [int(row["l"]) for row in csv.DictReader(fh)]


@pytest.fixture(scope="module")
def zoo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One python process (imports cost seconds): rl-zoo train, enjoy, plot_train and an Optuna study."""
    tmp_path = tmp_path_factory.mktemp("zoo")
    (tmp_path / "results").mkdir()
    out = _zoo(
        tmp_path,
        f"train --algo bayes_dqn --env CartPole-v1 -n 200 --eval-freq 100 --eval-episodes 2 --save-freq 100 "
        f"-f logs --seed 3 --hyperparams {TINY_DQN}",
        f"train --algo bayes_mpc --env Pendulum-v1 -n 60 --eval-freq -1 -f logs --seed 1 --hyperparams {TINY_MPC}",
        "enjoy --algo bayes_dqn --env CartPole-v1 -f logs -n 120 --no-render",
        "enjoy --algo bayes_mpc --env Pendulum-v1 -f logs -n 30 --no-render",
        f"plot_train --algo bayes_dqn --env CartPole-v1 --exp-folder logs -w 2 {tmp_path / 'curve'}",
        "all_plots -a bayes_dqn -e CartPole-v1 -f logs -o results/bayes_dqn --no-display",
        "train --algo bayes_dqn --env CartPole-v1 -n 120 -optimize --n-trials 2 --n-jobs 1 --sampler random "
        "--pruner none --n-evaluations 1 --eval-episodes 2 --no-optim-plots -f optuna --seed 3 "
        "--hyperparams learning_starts:50 n_members:3",
    )
    return tmp_path, out


def test_train_enjoy_and_plot_through_rl_zoo(zoo_run: tuple[Path, str]) -> None:
    tmp_path, out = zoo_run
    run = tmp_path / "logs" / "bayes_dqn" / "CartPole-v1_1"
    names = {p.name for p in run.iterdir()}
    assert {
        "CartPole-v1.zip",
        "best_model.zip",
        "evaluations.npz",
        "0.monitor.csv",
        "rl_model_100_steps.zip",
        "rl_model_200_steps.zip",
    } <= names
    assert {"config.yml", "args.yml", "command.txt"} <= {p.name for p in (run / "CartPole-v1").iterdir()}
    agent = load_agent(run / "CartPole-v1.zip")  # riskrl's safe format under rl-zoo's name
    assert type(agent).__name__ == "BayesDQN" and agent.num_timesteps == 200
    assert agent.config.hidden == (16, 16) or list(agent.config.hidden) == [16, 16]
    assert load_agent(run / "rl_model_100_steps.zip").num_timesteps == 100
    with zipfile.ZipFile(run / "best_model.zip") as zf:  # no pickle inside, unlike an SB3 .zip
        assert sorted(zf.namelist()) == ["manifest.json", "tensors.safetensors"]
    # the agent trained on rl-zoo's own Monitor-wrapped env: its episodes are in rl-zoo's monitor file
    lengths = _monitor_lengths(run)
    assert lengths and 200 - 500 < sum(lengths) <= 200
    evals = np.load(run / "evaluations.npz")
    assert evals["timesteps"].tolist() == [100, 200] and evals["results"].shape == (2, 2)
    mpc_run = tmp_path / "logs" / "bayes_mpc" / "Pendulum-v1_1"
    mpc = load_agent(mpc_run / "Pendulum-v1.zip")
    assert type(mpc).__name__ == "BayesMPC" and mpc.num_timesteps == 60 and len(mpc.buffer) == 60
    assert "Loading logs/bayes_mpc/Pendulum-v1_1/Pendulum-v1.zip" in out  # enjoy loaded and ran it
    assert "Mean reward" in out  # enjoy's CartPole episodes finished under rl-zoo's loop
    assert "PLOT_LINES [1]" in out and (tmp_path / "curve.png").stat().st_size > 0
    # all_plots reads the evaluations.npz files: its results table has the CartPole row
    assert "|CartPole-v1 |" in out and (tmp_path / "results" / "bayes_dqn.pkl").exists()


def test_optuna_study_with_a_risk_tolerance_search_space(zoo_run: tuple[Path, str]) -> None:
    tmp_path, _ = zoo_run
    reports = list(
        (tmp_path / "optuna" / "bayes_dqn").glob("report_CartPole-v1_2-trials-120-random-none_*.csv")
    )
    assert len(reports) == 1 and reports[0].with_suffix(".pkl").exists()
    with open(reports[0]) as fh:
        trials = list(csv.DictReader(fh))
    assert [t["state"] for t in trials] == ["COMPLETE", "COMPLETE"]
    tolerances = [float(t["params_risk_tolerance"]) for t in trials]
    assert all(-2.0 <= k <= 2.0 for k in tolerances) and tolerances[0] != tolerances[1]
    assert all(np.isfinite(float(t["value"])) for t in trials)


def test_zoo_classes_follow_sb3_path_conventions(tmp_path: Path) -> None:
    import rl_zoo3
    from rl_zoo3.hyperparams_opt import HYPERPARAMS_SAMPLER

    from riskrl.agents import BayesDQN as RiskrlBayesDQN
    from riskrl.zoo import BayesDQN, default_conf_file

    assert rl_zoo3.ALGOS["bayes_dqn"] is BayesDQN and "bayes_mpc" in HYPERPARAMS_SAMPLER
    assert default_conf_file("bayes_dqn").exists() and default_conf_file("bayes_mpc").exists()
    agent = BayesDQN(
        env="CartPole-v1", policy="MlpPolicy", seed=0, learning_starts=20, hidden=[8], n_members=2
    )
    agent.learn(40)
    path = agent.save(tmp_path / "model")
    assert path == tmp_path / "model.zip" and path.exists()
    loaded = BayesDQN.load(  # what rl-zoo passes: schedules, a seed, a dummy buffer, the YAML's values
        tmp_path / "model",
        custom_objects={"learning_rate": 0.0},
        seed=4,
        buffer_size=1,
        hidden=[8],
        risk_tolerance=1.5,
    )
    assert loaded.num_timesteps == 40 and loaded.seed == 4 and loaded.risk_tolerance == 1.5
    assert isinstance(RiskrlBayesDQN.load(path), RiskrlBayesDQN)  # one checkpoint kind for both
    with pytest.raises(ValueError, match="custom_objects"):
        BayesDQN.load(path, custom_objects={"policy_class": object})
    with pytest.raises(ValueError, match="hidden"):
        BayesDQN.load(path, hidden=[64, 64])
    with pytest.raises(ValueError, match="not a riskrl algorithm"):
        default_conf_file("ppo")


def test_hyperparameter_files_build_agents() -> None:
    import yaml

    from riskrl.zoo import ZOO_ALGOS, default_conf_file

    for algo, (cls, _, _) in ZOO_ALGOS.items():
        table = yaml.safe_load(default_conf_file(algo).read_text())
        assert {"CartPole-v1"} <= set(table)
        for env_id, params in table.items():
            kwargs = {k: v for k, v in params.items() if k not in ("n_timesteps", "n_envs")}
            agent = cls(env=env_id, seed=0, **kwargs)
            assert agent.env_id == env_id, textwrap.shorten(str(params), 80)


# Keys of rl-baselines3-zoo's entries that SB3_ZOO leaves out on purpose: the training length and
# policy class are the caller's, and observation normalisation would make the model act on other
# inputs than the ones riskrl.evaluate gives every policy (documented next to SB3_ZOO).
_ZOO_ONLY_KEYS = {"n_timesteps", "policy", "n_envs", "normalize"}


@pytest.mark.parametrize("algo_env", sorted(SB3_ZOO), ids=lambda k: f"{k[0]}-{k[1]}")
def test_sb3_zoo_table_matches_rl_zoo3s_own_hyperparameters(algo_env) -> None:
    """riskrl.benchmark.SB3_ZOO equals rl-baselines3-zoo's hyperparams/<algo>.yml entry, key by key."""
    rl_zoo3 = pytest.importorskip("rl_zoo3")
    yaml = pytest.importorskip("yaml")
    algo, env_id = algo_env
    path = Path(rl_zoo3.__file__).parent / "hyperparams" / f"{algo.lower()}.yml"
    zoo = yaml.load(path.read_text(), Loader=yaml.UnsafeLoader)[env_id]  # the zoo's own file ("!!float")
    n_envs, ours = SB3_ZOO[algo_env]
    assert n_envs == zoo.get("n_envs", 1)
    expected = {k: v for k, v in zoo.items() if k not in _ZOO_ONLY_KEYS}
    if "policy_kwargs" in expected:  # the zoo writes it as a Python expression string
        call = ast.parse(expected["policy_kwargs"], mode="eval").body
        assert isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "dict"
        expected["policy_kwargs"] = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
    assert set(ours) == set(expected)
    for key, value in expected.items():
        assert ours[key] == value, f"{algo} on {env_id}: {key} is {ours[key]!r}, the zoo has {value!r}"
