"""Peer contenders for ``bench_rollout.py``, run in the peers' own venv (never a riskrl dependency).

``python rollout_peers_worker.py N SECONDS ROUNDS THREADS`` prints one JSON object: CartPole-v1 steps/s of
gymnax under ``jax.jit`` + ``lax.scan`` (128 steps per call, actions drawn inside the program) and EnvPool
(one thread and ``THREADS`` threads, pre-generated numpy actions), each the median of ``ROUNDS`` windows.
A peer that is not installed is reported as ``null`` with the import error.
"""

from __future__ import annotations

import json
import statistics
import sys
import time


def _median_rate(call, per_call: int, seconds: float, rounds: int) -> float:
    call()
    call()
    rates = []
    for _ in range(rounds):
        n, t0 = 0, time.perf_counter()
        while (dt := time.perf_counter() - t0) < seconds or n == 0:
            call()
            n += 1
        rates.append(n * per_call / dt)
    return statistics.median(rates)


def gymnax_rate(n: int, seconds: float, rounds: int, horizon: int = 128) -> float:
    import gymnax
    import jax

    env, params = gymnax.make("CartPole-v1")
    step = jax.vmap(env.step, in_axes=(0, 0, 0, None))
    reset = jax.vmap(env.reset, in_axes=(0, None))
    _, state = reset(jax.random.split(jax.random.PRNGKey(0), n), params)

    @jax.jit
    def rollout(key, state):
        def body(st, k):
            ka, ks = jax.random.split(k)
            a = jax.random.randint(ka, (n,), 0, 2)
            out = step(jax.random.split(ks, n), st, a, params)  # (obs, state, reward, ...)
            st, r = out[1], out[2]
            return st, r.sum()

        return jax.lax.scan(body, state, jax.random.split(key, horizon))

    box = {"state": state, "key": jax.random.PRNGKey(1)}

    def call():
        box["key"], k = jax.random.split(box["key"])
        box["state"], rs = rollout(k, box["state"])
        rs.block_until_ready()

    return _median_rate(call, n * horizon, seconds, rounds)


def envpool_rate(n: int, threads: int, seconds: float, rounds: int) -> float:
    import envpool
    import numpy as np

    env = envpool.make("CartPole-v1", env_type="gymnasium", num_envs=n, batch_size=n, num_threads=threads)
    env.reset()
    pool = list(np.random.default_rng(0).integers(0, 2, (16, n)).astype(np.int32))
    box = {"i": 0}

    def call():
        env.step(pool[box["i"] & 15])
        box["i"] += 1

    return _median_rate(call, n, seconds, rounds)


def main() -> None:
    n, seconds, rounds, threads = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    out: dict[str, object] = {}
    for name, fn in (
        ("gymnax_jit_scan", lambda: gymnax_rate(n, seconds, rounds)),
        ("envpool_1thread", lambda: envpool_rate(n, 1, seconds, rounds)),
        (f"envpool_{threads}threads", lambda: envpool_rate(n, threads, seconds, rounds)),
    ):
        try:
            out[name] = fn()
        except Exception as err:  # an absent or broken peer is reported, not fatal
            out[name] = None
            out[name + "_error"] = repr(err)[:200]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
