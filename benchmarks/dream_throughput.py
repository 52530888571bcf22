"""Imagined steps/s of DreamVectorEnv vs the real MuJoCo env's steps/s, in one run.

World models (presets ``default``, ``small`` and ``tiny``) are fitted briefly on random-policy
InvertedPendulum-v5 data so that their loop iteration counts are realistic; then both the
dream and the real env are stepped with uniformly random actions for a fixed time each.

    python benchmarks/dream_throughput.py            # writes results/dream_throughput.json
    python benchmarks/dream_throughput.py --quick    # smoke run, writes nothing
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from loopwm.collect import collect
from loopwm.config import FitConfig
from loopwm.envs import DreamVectorEnv
from loopwm.fit import fit

RESULTS = Path(__file__).parent / "results" / "dream_throughput.json"
ENV_ID = "InvertedPendulum-v5"


def timed_steps(step, seconds: float, batch: int) -> float:
    """Env steps per second of ``step()`` (which advances ``batch`` envs) over ``seconds``."""
    step()  # warm-up
    count, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        step()
        count += 1
    return count * batch / elapsed


def real_steps_per_second(seconds: float, num_envs: int) -> float:
    if num_envs == 1:
        env = gym.make(ENV_ID)
        env.reset(seed=0)
        env.action_space.seed(0)

        def step():
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                env.reset()

        return timed_steps(step, seconds, 1)
    envs = gym.vector.SyncVectorEnv([lambda: gym.make(ENV_ID) for _ in range(num_envs)])
    envs.reset(seed=0)
    envs.action_space.seed(0)
    return timed_steps(lambda: envs.step(envs.action_space.sample()), seconds, num_envs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--data", default="runs/bench/pendulum-20k")
    args = parser.parse_args()
    seconds = 0.5 if args.quick else 5.0
    sizes = [1, 64] if args.quick else [1, 64, 1024, 4096]
    presets = ["tiny"] if args.quick else ["default", "small", "tiny"]
    data = Path(args.data + ("-quick" if args.quick else ""))
    if not (data / "meta.json").exists():
        collect(ENV_ID, 2000 if args.quick else 20_000, data, seed=0, progress=False)

    real = {n: real_steps_per_second(seconds, n) for n in (1, 16)}
    print(f"real {ENV_ID}: {real[1]:.0f} steps/s (1 env), {real[16]:.0f} (SyncVectorEnv x16)")
    rows = []
    for preset in presets:
        cfg = FitConfig(steps=20 if args.quick else 300, eval_horizon=5, eval_every=0)
        model, _ = fit(data, preset=preset, config=cfg, progress=False)
        for n in sizes:
            env = DreamVectorEnv(model, n, env_id=ENV_ID, start_states=data)
            env.reset(seed=0)
            rng = np.random.default_rng(0)
            actions = rng.uniform(-3, 3, size=(64, n, 1))
            iters = []

            def step(env=env, actions=actions, iters=iters):
                infos = env.step(actions[len(iters) % 64])[4]
                iters.append(float(infos["loop_iters"].mean()))

            rate = timed_steps(step, seconds, n)
            rows.append(
                {
                    "preset": preset,
                    "num_envs": n,
                    "parameters": model.num_parameters(),
                    "steps_per_second": rate,
                    "loop_iters_mean": float(np.mean(iters)),
                    "ratio_to_real_single_env": rate / real[1],
                }
            )
            print(
                f"dream {preset:8s} N={n:5d}: {rate:10.0f} steps/s "
                f"({rate / real[1]:6.1f}x real), {np.mean(iters):.1f} loop iters",
                flush=True,
            )
    report = {
        "command": "python benchmarks/dream_throughput.py" + (" --quick" if args.quick else ""),
        "env_id": ENV_ID,
        "seconds_per_measurement": seconds,
        "real_steps_per_second": {"single_env": real[1], "sync_vector_env_16": real[16]},
        "dream": rows,
        "target": ">= 100x the real env's steps/s at N = 4096",
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "gymnasium": gym.__version__,
        },
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "date": time.strftime("%Y-%m-%d"),
    }
    if not args.quick:
        RESULTS.write_text(json.dumps(report, indent=2))
        print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
