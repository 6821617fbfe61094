"""Runs one of bsuite's own baseline agents (``bsuite.baselines.jax``: ``boot_dqn`` or ``dqn``, their
``default_agent``) on one bsuite id, logged with bsuite's CSV logger. Called by ``bench_bsuite.py
--baseline-python PY`` in a separate interpreter (bsuite's baselines need JAX, dm-haiku, optax and rlax,
which riskrl does not depend on): it must not import torch or riskrl.

Usage: ``python bsuite_baselines_worker.py '<json spec>'`` with keys ``agent``, ``bsuite_id``,
``seed``, ``csv_dir``, ``max_episodes``, ``run_seconds`` and, for deep_sea, ``stop`` = ``{"threshold",
"min_episode", "logged"}``: stop at the first episode in ``logged`` (the episodes bsuite's logger
writes) whose cumulative bad-episode fraction is below ``threshold`` (bsuite's solved criterion, as
``bench_bsuite.py`` stops riskrl's runs). Prints one line ``RECORD <json>``.

The loop is bsuite's protocol (``bsuite.baselines.experiment.run``): ``select_action`` on each time
step, ``update`` with the transition, episodes until a cap.
"""

from __future__ import annotations

import json
import sys
import time

import bsuite
from bsuite.baselines.jax import boot_dqn, dqn

AGENTS = {"boot_dqn": boot_dqn, "dqn": dqn}


def main() -> None:
    spec = json.loads(sys.argv[1])
    env = bsuite.load_and_record_to_csv(spec["bsuite_id"], results_dir=spec["csv_dir"], overwrite=True)
    agent = AGENTS[spec["agent"]].default_agent(
        env.observation_spec(), env.action_spec(), seed=int(spec["seed"])
    )
    raw = env._env  # bsuite's environment under its logging wrapper
    stop, logged = spec.get("stop"), set((spec.get("stop") or {}).get("logged", []))
    deadline = time.time() + float(spec["run_seconds"])
    start, cpu0 = time.time(), time.process_time()
    episodes, steps, reason = 0, 0, "episode cap"
    bad_counts: list[int] = []
    first_treasure = None
    while episodes < int(spec["max_episodes"]):
        if time.time() > deadline:
            reason = "time cap"
            break
        timestep = env.reset()
        while not timestep.last():
            action = agent.select_action(timestep)
            new_timestep = env.step(action)
            agent.update(timestep, action, new_timestep)
            timestep = new_timestep
            steps += 1
        episodes += 1
        if stop is not None:
            info = raw.bsuite_info()
            bad_counts.append(int(info["total_bad_episodes"]))
            if first_treasure is None and float(info["denoised_return"]) > 0:
                first_treasure = episodes
            ok = episodes >= stop["min_episode"] and bad_counts[-1] / episodes < stop["threshold"]
            if ok and episodes in logged:
                reason = "solved"
                break
    record = {
        "episodes": episodes,
        "env_steps": steps,
        "stop_reason": reason,
        "wall_s": round(time.time() - start, 1),
        "cpu_s": round(time.process_time() - cpu0, 1),
        "bad_counts": bad_counts,
        "first_treasure_episode": first_treasure,
        "info": {k: float(v) for k, v in raw.bsuite_info().items()},
        "versions": {"bsuite": bsuite.__version__, "jax": __import__("jax").__version__},
    }
    print("RECORD " + json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
