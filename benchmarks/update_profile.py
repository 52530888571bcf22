"""Where one agent update and one acting step spend their time.

Fills a replay with random real transitions, warms the agent up, then times ``--updates``
agent updates and ``--acts`` acting steps (with their env steps) under torch.profiler and
reports the wall milliseconds of each phase the agent labels (``agent/*``): the
world-model update, the imagination forward pass, the actor's backward pass and step, the
critic, acting, plus the env step. Each thread count runs in its own process, so they do
not share torch's thread pool.

    python benchmarks/update_profile.py                 # InvertedPendulum-v5, 1 and 2 threads
    python benchmarks/update_profile.py --envs HalfCheetah-v5 --threads 1
    python benchmarks/update_profile.py --envs InvertedPendulum-v5 pixels/InvertedPendulum-v5 \
        --threads 1 --out benchmarks/results/update_profile_pixels.json   # state vs pixels
    python benchmarks/update_profile.py --quick         # smoke run, writes nothing

Each run also records its process's peak memory and the replay's bytes per stored
transition (pixels are stored as uint8).

The machine's single-thread matmul rate is recorded beside the figures: machines of one
kind differ by 3x, so times are comparable only through it.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import machine_info, matmul_gflops

RESULTS = Path(__file__).parent / "results" / "update_profile.json"
PROFILED_UPDATES = 5
PHASES = (
    "agent/world_model_update",
    "agent/imagine_forward",
    "agent/actor_backward",
    "agent/critic_update",
    "agent/act",
)


def profile(env_id: str, threads: int, updates: int, acts: int, seed: int) -> dict:
    """Milliseconds per update and per acting step, by phase, in this process."""
    from loopwm.agents import DreamerAgent
    from loopwm.envs import ActionCodec, ObsCodec, make_env
    from loopwm.online_replay import OnlineReplay

    torch.set_num_threads(threads)
    env = make_env(env_id)
    agent = DreamerAgent(env.observation_space, env.action_space, seed=seed)
    observations = ObsCodec(env.observation_space)
    with tempfile.TemporaryDirectory() as folder:
        replay = OnlineReplay(
            Path(folder) / "replay",
            obs_dim=observations.dim,
            action_dim=ActionCodec(env.action_space).dim,
            obs_dtype=observations.storage_dtype,
        )
        env.action_space.seed(seed)
        obs, _ = env.reset(seed=seed)
        for _ in range(2000):
            action = env.action_space.sample()
            next_obs, reward, terminated, truncated, _ = env.step(action)
            replay.add(obs, action, reward, next_obs, terminated, truncated)
            obs = env.reset()[0] if terminated or truncated else next_obs
        for _ in range(5):  # warm-up: allocator, caches, the normaliser
            agent.update(replay)
        # Wall time without the profiler (its recording costs time and memory) ...
        started = time.perf_counter()
        for _ in range(updates):
            agent.update(replay)
        update_seconds = time.perf_counter() - started
        obs, _ = env.reset(seed=seed)
        env_seconds, started = 0.0, time.perf_counter()
        for _ in range(acts):
            action = agent.act(obs, explore=True)
            tick = time.perf_counter()
            obs, _, terminated, truncated, _ = env.step(action)
            env_seconds += time.perf_counter() - tick
            if terminated or truncated:
                obs, _ = env.reset()
        act_seconds = time.perf_counter() - started - env_seconds
        # ... and the split by phase from a few profiled updates.
        profiled = min(updates, PROFILED_UPDATES)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(profiled):
                agent.update(replay)
        replay_bytes = sum(getattr(replay, k).nbytes for k in ("obs", "next_obs", "action"))
        stored = len(replay)
        replay.close()
    totals = {e.key: e.cpu_time_total / 1e3 for e in prof.key_averages() if e.key in PHASES}
    per_update = {k: totals.get(k, 0.0) / profiled for k in PHASES if k != "agent/act"}
    return {
        "env_id": env_id,
        "threads": threads,
        "updates": updates,
        "acts": acts,
        "ms_per_update": 1e3 * update_seconds / updates,
        "ms_per_update_by_phase": per_update,  # under the profiler: a split, not a total
        "ms_per_act": 1e3 * act_seconds / acts,
        "ms_per_env_step": 1e3 * env_seconds / acts,
        "replay_bytes_per_transition": replay_bytes / stored,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "matmul_gflops_1_thread": matmul_gflops(1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=["InvertedPendulum-v5"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--updates", type=int, default=50)
    parser.add_argument("--acts", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--quick", action="store_true", help="smoke run, writes nothing")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.updates, args.acts, args.threads = 3, 20, [1]
    if args.child:  # one env and thread count, in a fresh process
        record = profile(args.envs[0], args.threads[0], args.updates, args.acts, args.seed)
        print(json.dumps(record))
        return 0
    runs = []
    for env_id in args.envs:
        for threads in args.threads:
            command = [
                sys.executable, __file__, "--child", "--envs", env_id,
                "--threads", str(threads), "--updates", str(args.updates),
                "--acts", str(args.acts), "--seed", str(args.seed),
            ]  # fmt: skip
            output = subprocess.run(command, check=True, capture_output=True, text=True)
            record = json.loads(output.stdout.strip().splitlines()[-1])
            runs.append(record)
            phases = ", ".join(
                f"{k.split('/')[1]} {v:.1f}" for k, v in record["ms_per_update_by_phase"].items()
            )
            print(
                f"{env_id} threads {threads}: update {record['ms_per_update']:.1f} ms "
                f"({phases}); act {record['ms_per_act']:.2f} ms, "
                f"env {record['ms_per_env_step']:.3f} ms; "
                f"peak memory {record['peak_rss_mb']:.0f} MB; "
                f"matmul {record['matmul_gflops_1_thread']:.0f} GFLOP/s per thread",
                flush=True,
            )
    if not args.quick:
        report = {
            "command": " ".join(sys.argv),
            "versions": {
                "python": platform.python_version(),
                "torch": torch.__version__,
                "numpy": np.__version__,
            },
            "machine": machine_info(),
            "runs": runs,
        }
        args.out.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
