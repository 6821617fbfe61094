"""Train one d3rlpy algorithm on arrays written by ``bench_offline.py``; runs in d3rlpy's own venv.

d3rlpy 2.8.1 pins gymnasium 1.0.0, so it lives outside riskrl's environment (see the README's
"Learning from a dataset"). This script imports neither riskrl nor gymnasium: it reads an ``.npz``
of the very arrays riskrl's agents train on, fits the algorithm at d3rlpy's defaults (plus a
min-max action scaler to the env's action bounds for continuous actions, which d3rlpy's tanh
policies need), and saves the greedy policy as TorchScript, which ``bench_offline.py`` evaluates
with ``riskrl.evaluate``.

Usage: ``python d3rlpy_worker.py '<json spec>'`` with keys ``npz``, ``algo`` (e.g. ``"DiscreteCQL"``),
``seed``, ``steps``, ``policy`` (output .pt) and ``result`` (output .json).
"""

from __future__ import annotations

import json
import sys
import time

import d3rlpy
import numpy as np
import torch


def main() -> None:
    spec = json.loads(sys.argv[1])
    torch.set_num_threads(1)
    d3rlpy.seed(int(spec["seed"]))
    z = np.load(spec["npz"])
    discrete = bool(z["discrete"])
    space = d3rlpy.constants.ActionSpace.DISCRETE if discrete else d3rlpy.constants.ActionSpace.CONTINUOUS
    dataset = d3rlpy.dataset.MDPDataset(
        observations=z["observations"],
        actions=z["actions"],
        rewards=z["rewards"],
        terminals=z["terminals"],
        timeouts=z["timeouts"],
        action_space=space,
        action_size=int(z["action_size"]),
    )
    kwargs = {}
    if not discrete:
        kwargs["action_scaler"] = d3rlpy.preprocessing.MinMaxActionScaler(
            minimum=z["action_low"], maximum=z["action_high"]
        )
    config = getattr(d3rlpy.algos, f"{spec['algo']}Config")(**kwargs)
    algo = config.create(device="cpu:0")
    started = time.time()
    algo.fit(
        dataset,
        n_steps=int(spec["steps"]),
        n_steps_per_epoch=int(spec["steps"]),
        logger_adapter=d3rlpy.logging.NoopAdapterFactory(),
        show_progress=False,
        save_interval=10**9,
    )
    seconds = time.time() - started
    algo.save_policy(spec["policy"])
    with open(spec["result"], "w") as fh:
        json.dump({"train_seconds": seconds, "d3rlpy": d3rlpy.__version__}, fh)


if __name__ == "__main__":
    main()
