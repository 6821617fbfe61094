"""riskrl agents inside rl-zoo (``rl_zoo3``): training, enjoying, plotting and Optuna tuning.

One import registers riskrl's agents with rl-zoo's algorithm table and Optuna samplers::

    import riskrl.zoo  # adds "bayes_dqn" and "bayes_mpc" to rl_zoo3's ALGOS

and ``python -m riskrl.zoo`` is rl-zoo's own command line (``rl_zoo3.cli``) with them registered
and riskrl's hyperparameter files as the default ``--conf-file`` for them::

    python -m riskrl.zoo train --algo bayes_dqn --env CartPole-v1
    python -m riskrl.zoo train --algo bayes_dqn --env CartPole-v1 -optimize --n-trials 20
    python -m riskrl.zoo enjoy --algo bayes_dqn --env CartPole-v1 --folder logs/
    python -m riskrl.zoo plot_train --algo bayes_dqn --env CartPole-v1 --exp-folder logs/

Everything else is rl-zoo's: the env it builds (``DummyVecEnv`` of Monitor-wrapped gymnasium envs,
which the agent trains on through :class:`riskrl.agents.sb3_compat.VecEnvAdapter`), its callbacks,
its log folder layout and its Optuna study (the search space includes ``risk_tolerance``).
Checkpoints are riskrl's safe format under rl-zoo's names (``<env>.zip``, ``best_model.zip``,
``rl_model_<n>_steps.zip``); nothing is pickled except what rl-zoo itself writes (its Optuna report).
Needs the ``zoo`` extra: ``pip install "riskrl[zoo]"``.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    import optuna
    import rl_zoo3
    import rl_zoo3.hyperparams_opt as zoo_opt
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        f"riskrl.zoo needs rl_zoo3 and optuna ({err}); install them with: pip install 'riskrl[zoo]'"
    ) from err

from riskrl.agents import BayesDQN as _BayesDQN
from riskrl.agents import BayesMPC as _BayesMPC
from riskrl.agents.base import Agent
from riskrl.agents.sb3_compat import (
    as_batched_env,
    check_custom_objects,
    resolve_auto_device,
    sb3_load_path,
    sb3_save_path,
)

__all__ = ["HYPERPARAMS_DIR", "ZOO_ALGOS", "BayesDQN", "BayesMPC", "default_conf_file", "main", "register"]

#: The folder of riskrl's rl-zoo hyperparameter files (``<algo>.yml``).
HYPERPARAMS_DIR = Path(__file__).parent / "zoo_hyperparams"


class _ZooPaths:
    """SB3's path conventions for rl-zoo: ``save("x")`` writes ``x.zip``; ``load`` takes SB3's arguments."""

    def save(self, path: str | Path, include_training_state: bool = True) -> Path:
        """Save in riskrl's safe format; a path without a suffix gets ``.zip``, as in SB3."""
        return super().save(sb3_save_path(path), include_training_state)  # type: ignore[misc]

    @classmethod
    def load(  # type: ignore[override]
        cls,
        path: str | Path,
        env: Any = None,
        device: str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs: Any,
    ) -> Agent:
        """Load as SB3's ``load``: ``path`` with or without ``.zip``; ``env`` may be an SB3 ``VecEnv``.

        ``custom_objects`` may only name SB3 schedules (riskrl stores none, so there is nothing to
        replace); ``seed``, ``verbose`` and ``tensorboard_log`` are set on the loaded agent;
        hyperparameters must equal the saved ones (a loaded network cannot change shape).
        """
        check_custom_objects(custom_objects)
        seed = kwargs.pop("seed", None)
        verbose = kwargs.pop("verbose", None)
        tensorboard_log = kwargs.pop("tensorboard_log", None)
        kwargs.pop("policy", None)
        kwargs.pop("buffer_size", None)  # rl-zoo's enjoy shrinks SB3 buffers; riskrl's is in the file
        overrides = {"risk_tolerance": kwargs.pop("risk_tolerance")} if "risk_tolerance" in kwargs else {}
        device = resolve_auto_device(device)
        path = sb3_load_path(path)
        agent = super().load(path, env=as_batched_env(env, device), device=device, **overrides)  # type: ignore[misc]
        if kwargs:
            wanted = agent._make_config({**dataclasses.asdict(agent.config), **kwargs})
            if wanted != agent.config:
                changed = sorted(k for k in kwargs if getattr(wanted, k) != getattr(agent.config, k))
                raise ValueError(
                    f"load() cannot change the saved hyperparameters {changed}; train a new agent instead"
                )
        agent.set_random_seed(seed)
        if verbose is not None:
            agent.verbose = int(verbose)
        if tensorboard_log is not None:
            agent.tensorboard_log = tensorboard_log
        return agent


class BayesDQN(_ZooPaths, _BayesDQN):
    """:class:`riskrl.agents.BayesDQN` with SB3's save/load path conventions, as rl-zoo uses it.

    Same class name, so its checkpoints are ``BayesDQN`` checkpoints for every riskrl loader.
    """


class BayesMPC(_ZooPaths, _BayesMPC):
    """:class:`riskrl.agents.BayesMPC` with SB3's save/load path conventions, as rl-zoo uses it."""


def sample_bayes_dqn_params(
    trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict[str, Any]
) -> dict[str, Any]:
    """Optuna search space for BayesDQN: the risk knob, learning rate, discount and network size."""
    net = trial.suggest_categorical("net_arch", ["small", "medium"])
    return {
        "risk_tolerance": trial.suggest_float("risk_tolerance", -2.0, 2.0),
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 3e-3, log=True),
        "gamma": trial.suggest_categorical("gamma", [0.95, 0.98, 0.99]),
        "n_members": trial.suggest_categorical("n_members", [3, 5]),
        "hidden": {"small": [64, 64], "medium": [256, 256]}[net],
    }


def convert_bayes_dqn_params(params: dict[str, Any]) -> dict[str, Any]:
    """A stored trial's parameters as BayesDQN hyperparameters (``net_arch`` names -> ``hidden``)."""
    out = dict(params)
    out["hidden"] = {"small": [64, 64], "medium": [256, 256]}[out.pop("net_arch")]
    return out


def sample_bayes_mpc_params(
    trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict[str, Any]
) -> dict[str, Any]:
    """Optuna search space for BayesMPC: the risk knob, model disagreement, horizon and model rate."""
    return {
        "risk_tolerance": trial.suggest_float("risk_tolerance", -5.0, 2.0),
        "disagreement_weight": trial.suggest_categorical("disagreement_weight", [0.0, 1.0]),
        "horizon": trial.suggest_categorical("horizon", [10, 15, 25]),
        "learning_rate": trial.suggest_float("learning_rate", 3e-4, 3e-3, log=True),
    }


def _identity(params: dict[str, Any]) -> dict[str, Any]:
    return dict(params)


#: rl-zoo algorithm name -> (agent class, Optuna sampler, trial-parameter converter).
ZOO_ALGOS: dict[str, tuple[type[Agent], Callable[..., dict[str, Any]], Callable[..., dict[str, Any]]]] = {
    "bayes_dqn": (BayesDQN, sample_bayes_dqn_params, convert_bayes_dqn_params),
    "bayes_mpc": (BayesMPC, sample_bayes_mpc_params, _identity),
}


def register() -> None:
    """Add riskrl's algorithms to rl-zoo's ``ALGOS`` and Optuna tables (idempotent)."""
    for name, (cls, sampler, converter) in ZOO_ALGOS.items():
        rl_zoo3.ALGOS[name] = cls  # the same dict object as rl_zoo3.utils.ALGOS
        zoo_opt.HYPERPARAMS_SAMPLER[name] = sampler
        zoo_opt.HYPERPARAMS_CONVERTER[name] = converter


def default_conf_file(algo: str) -> Path:
    """riskrl's rl-zoo hyperparameter file for ``algo`` (``bayes_dqn`` or ``bayes_mpc``)."""
    if algo not in ZOO_ALGOS:
        raise ValueError(f"{algo!r} is not a riskrl algorithm; riskrl's are {sorted(ZOO_ALGOS)}")
    return HYPERPARAMS_DIR / f"{algo}.yml"


def _algo_of(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg == "--algo" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--algo="):
            return arg.split("=", 1)[1]
    return None


def main(argv: list[str] | None = None) -> None:
    """``python -m riskrl.zoo <script> [rl-zoo arguments]``: rl-zoo's CLI with riskrl registered.

    ``script`` is one of rl-zoo's (``train``, ``enjoy``, ``plot_train``, ``plot_from_file``,
    ``all_plots``). For ``train`` with a riskrl ``--algo`` and no ``--conf-file``/``-conf``, riskrl's
    hyperparameter file is used.
    """
    from rl_zoo3 import cli

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return
    algo = _algo_of(args)
    if args[0] == "train" and algo in ZOO_ALGOS and not ({"--conf-file", "-conf"} & set(args)):
        args += ["--conf-file", str(default_conf_file(algo))]
    sys.argv = [sys.argv[0], *args]
    cli.main()


register()

if __name__ == "__main__":
    main()
