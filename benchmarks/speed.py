"""Speed of ``loopwm train`` against SB3 SAC, measured side by side in one run.

Two figures per seed, for the Dreamer-style agent at its defaults (``loopwm train``) and
stable-baselines3 SAC at its defaults, both with the same torch thread count:

- **ms per real step** while learning: the wall time from step 1,250 to step 3,000 (both
  learn over that whole window; the agent's prefill ends at 1,000, SAC's at 100) divided
  by its 1,750 steps, without evaluations. On InvertedPendulum-v5 and HalfCheetah-v5.
- **time to solve InvertedPendulum-v5**: real steps and wall seconds until the first
  evaluation (5 deterministic episodes, every 500 steps, the same evaluation seeds) with
  mean return >= 950, the env's reward threshold. Wall seconds are given with and without
  the time spent evaluating.

The machine's single-thread matmul rate is recorded beside the figures (machines of one
kind differ by 3x).

    python benchmarks/speed.py                # 3 seeds, about 45 minutes on 2 cores
    python benchmarks/speed.py --seeds 0      # one seed
    python benchmarks/speed.py --quick        # smoke run, writes nothing
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from machine import provenance
from stable_baselines3 import SAC
from stable_baselines3.common.callbacks import BaseCallback

from loopwm.agents import SB3Actor, TrainConfig, evaluate_agent, train
from loopwm.agents.train import EVAL_SEED_OFFSET

RESULTS = Path(__file__).parent / "results" / "speed.json"
RUNS = Path("runs/bench/speed")
SOLVE_ENV = "InvertedPendulum-v5"
THROUGHPUT_ENVS = ("InvertedPendulum-v5", "HalfCheetah-v5")
WINDOW = (1_250, 3_000)  # steps between which both learners are timed
EVAL_EVERY, EVAL_EPISODES = 500, 5
THRESHOLD = 950.0
BUDGET = {"dreamer": 10_000, "sac": 50_000}  # most real steps spent trying to solve
QUICK: dict = {}  # --quick: the agent learns after 200 steps, so the smoke run updates too


class Timestamps:
    """A ``loopwm train`` logger that keeps the wall time of each step at which training
    metrics are logged (and nothing else)."""

    def __init__(self) -> None:
        self.at: dict[int, float] = {}

    def scalars(self, metrics, step) -> None:
        if any(key.startswith("wm/") for key in metrics):
            self.at.setdefault(step, time.perf_counter())

    def histogram(self, tag, values, step) -> None: ...

    def video(self, tag, frames, step, fps: int = 10) -> None: ...

    def close(self) -> None: ...


class SacProbe(BaseCallback):
    """Times SAC's window and evaluates it like ``loopwm train`` evaluates its agent;
    stops training at the first evaluation that reaches ``threshold`` (if given)."""

    def __init__(self, env_id: str, seed: int, threshold: float | None) -> None:
        super().__init__()
        self.env = gym.make(env_id)
        self.seed, self.threshold = seed, threshold
        self.at: dict[int, float] = {}
        self.evaluations: list[dict] = []
        self.eval_seconds = 0.0
        self.started = time.perf_counter()

    def _on_step(self) -> bool:
        step = self.num_timesteps
        if step in WINDOW:
            self.at[step] = time.perf_counter()
        if self.threshold is None or step % EVAL_EVERY:
            return True
        started = time.perf_counter()
        seed = self.seed + EVAL_SEED_OFFSET  # as loopwm train evaluates
        returns = evaluate_agent(SB3Actor(self.model), self.env, EVAL_EPISODES, seed=seed)
        self.eval_seconds += time.perf_counter() - started
        self.evaluations.append(
            {
                "env_steps": step,
                "wall_seconds": round(time.perf_counter() - self.started, 2),
                "eval_seconds": round(self.eval_seconds, 2),
                "return_mean": float(np.mean(returns)),
            }
        )
        return float(np.mean(returns)) < self.threshold


def window_ms(at: dict[int, float]) -> float:
    """Milliseconds per real step over the timed window."""
    first, last = min(at), max(at)
    return round(1e3 * (at[last] - at[first]) / (last - first), 2)


def sac_throughput(env_id: str, seed: int) -> float:
    probe = SacProbe(env_id, seed, threshold=None)
    SAC("MlpPolicy", env_id, seed=seed, device="cpu", verbose=0).learn(WINDOW[1], probe)
    return window_ms(probe.at)


def dreamer_throughput(env_id: str, seed: int) -> float:
    stamps = Timestamps()
    config = TrainConfig(
        env_id=env_id,
        steps=WINDOW[1],
        eval_every=WINDOW[1],
        checkpoint_every=1_000,
        log_every=50,
        stop_at_threshold=False,
        seed=seed,
        **QUICK,
    )
    run_dir = RUNS / env_id / f"throughput-seed{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)
    train(config, run_dir, progress=False, video=False, make_logger=lambda _: stamps)
    return window_ms({step: t for step, t in stamps.at.items() if step >= WINDOW[0]})


def solved(evaluations: list[dict], wall: float) -> dict:
    """Steps and seconds to the first evaluation at or above the threshold."""
    for record in evaluations:
        if record["return_mean"] >= THRESHOLD:
            return {
                "solved": True,
                "env_steps": record["env_steps"],
                "wall_seconds": record["wall_seconds"],
                "wall_seconds_without_eval": round(
                    record["wall_seconds"] - record["eval_seconds"], 2
                ),
            }
    return {"solved": False, "env_steps": None, "wall_seconds": wall}


def sac_solve(seed: int, budget: int) -> dict:
    probe = SacProbe(SOLVE_ENV, seed, threshold=THRESHOLD)
    started = time.perf_counter()
    SAC("MlpPolicy", SOLVE_ENV, seed=seed, device="cpu", verbose=0).learn(budget, probe)
    return {
        **solved(probe.evaluations, round(time.perf_counter() - started, 2)),
        "curve": probe.evaluations,
    }


def dreamer_solve(seed: int, budget: int) -> dict:
    config = TrainConfig(
        env_id=SOLVE_ENV,
        steps=budget,
        eval_every=EVAL_EVERY,
        eval_episodes=EVAL_EPISODES,
        reward_threshold=THRESHOLD,
        seed=seed,
        **QUICK,
    )
    run_dir = RUNS / SOLVE_ENV / f"solve-seed{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)
    started = time.perf_counter()
    summary = train(config, run_dir, progress=False, tensorboard=False, video=False)
    evaluations, spent = summary["evaluations"], 0.0
    for record in evaluations:  # the time spent evaluating so far, like SAC's
        spent += record["eval_seconds"]
        record["eval_seconds"] = round(spent, 2)
    curve = [
        {k: e[k] for k in ("env_steps", "wall_seconds", "eval_seconds", "return_mean")}
        for e in evaluations
    ]
    return {**solved(curve, round(time.perf_counter() - started, 2)), "curve": curve}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (both learners)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--quick", action="store_true", help="tiny budgets, writes nothing")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    global WINDOW, EVAL_EVERY
    if args.quick:
        args.seeds = args.seeds[:1]
        WINDOW, EVAL_EVERY = (300, 500), 250
        BUDGET.update(dreamer=500, sac=500)
        QUICK.update(prefill=200, pretrain=10)
    results = {
        **provenance(),
        "window": list(WINDOW),
        "threshold": THRESHOLD,
        "eval_every": EVAL_EVERY,
        "budget": BUDGET,
        "ms_per_step": {},
        "solve": {"dreamer": {}, "sac": {}},
    }

    def save() -> None:
        if not args.quick:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=2))

    for seed in args.seeds:
        for env_id in THROUGHPUT_ENVS if not args.quick else THROUGHPUT_ENVS[:1]:
            row = results["ms_per_step"].setdefault(env_id, {"dreamer": {}, "sac": {}})
            row["sac"][str(seed)] = sac_throughput(env_id, seed)
            row["dreamer"][str(seed)] = dreamer_throughput(env_id, seed)
            print(
                f"{env_id} seed {seed}: {row['dreamer'][str(seed)]:.1f} ms per step against "
                f"SAC's {row['sac'][str(seed)]:.1f}",
                flush=True,
            )
            save()
        for learner, run in (("sac", sac_solve), ("dreamer", dreamer_solve)):
            record = run(seed, BUDGET[learner])
            results["solve"][learner][str(seed)] = record
            print(
                f"{SOLVE_ENV} seed {seed} {learner}: solved={record['solved']} at "
                f"{record['env_steps']} steps, {record['wall_seconds']:.0f} s",
                flush=True,
            )
            save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
