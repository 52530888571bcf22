"""Real-env return of SAC trained with LoopWM imagination (Dyna/MBPO-style) vs plain SAC.

Same real-env step budget, same seeds, evaluated on the real InvertedPendulum-v5 at 5k and
10k real steps (10 deterministic episodes each). Variants:

- ``sac``: stable-baselines3 SAC, default hyperparameters (one gradient step per env step).
- ``sac-utd2``: the same with two gradient steps per env step (real data only): the
  update-ratio control for the Dyna variant.
- ``sac-dyna``: two gradient steps per env step, plus :class:`DynaCallback` adding
  imagined transitions from a LoopWM refitted every 250 real steps.

    python benchmarks/dyna_sac.py            # 3 seeds, writes results/dyna_sac.json
    python benchmarks/dyna_sac.py --quick    # smoke run, writes nothing
    python benchmarks/dyna_sac.py --variants sac-dyna --rollouts 50 \
        --out benchmarks/results/dyna_sac_rollouts50.json   # fewer imagined transitions
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import stable_baselines3
import torch
from machine import machine_info
from stable_baselines3 import SAC
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from loopwm.agents.dyna import DynaCallback, DynaConfig

RESULTS = Path(__file__).parent / "results" / "dyna_sac.json"
ENV_ID = "InvertedPendulum-v5"


class EvalAt(BaseCallback):
    """Evaluate on the real env when the step count reaches each checkpoint."""

    def __init__(self, at: list[int], episodes: int, seed: int) -> None:
        super().__init__()
        self.at, self.episodes, self.seed = sorted(at), episodes, seed
        self.results: dict[int, dict] = {}
        self.started = time.perf_counter()

    def _on_step(self) -> bool:
        if self.at and self.num_timesteps >= self.at[0]:
            step = self.at.pop(0)
            env = Monitor(gym.make(ENV_ID))
            env.reset(seed=self.seed + 1000)
            returns, _ = evaluate_policy(
                self.model, env, n_eval_episodes=self.episodes, return_episode_rewards=True
            )
            self.results[step] = {
                "return_mean": float(np.mean(returns)),
                "return_std": float(np.std(returns)),
                "wall_seconds": time.perf_counter() - self.started,
            }
            print(f"  {step} steps: {np.mean(returns):.1f} +- {np.std(returns):.1f}", flush=True)
        return True


def run(variant: str, seed: int, budget: int, at: list[int], episodes: int, dyna: DynaConfig):
    env = Monitor(gym.make(ENV_ID))
    agent = SAC(
        "MlpPolicy", env, seed=seed, device="cpu", gradient_steps=1 if variant == "sac" else 2
    )
    evaluator = EvalAt(at, episodes, seed)
    callbacks = [evaluator]
    dyna_cb = None
    if variant == "sac-dyna":
        dyna_cb = DynaCallback(dyna, seed=seed)
        callbacks.insert(0, dyna_cb)
    started = time.perf_counter()
    agent.learn(budget, callback=CallbackList(callbacks))
    row = {
        "seed": seed,
        "eval": {str(k): v for k, v in evaluator.results.items()},
        "wall_seconds": time.perf_counter() - started,
    }
    if dyna_cb is not None:
        row["imagined_transitions"] = dyna_cb.imagined
        row["final_model_metrics"] = dyna_cb.history[-1] if dyna_cb.history else None
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variants", nargs="+", default=["sac", "sac-utd2", "sac-dyna"])
    parser.add_argument("--rollouts", type=int, help="DynaConfig.rollouts (default 400)")
    parser.add_argument("--out", default=str(RESULTS), help="results JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        args.seeds = args.seeds[:1]
        budget, at, episodes = 600, [300, 600], 2
        dyna = DynaConfig(
            warmup_steps=200,
            refit_every=200,
            first_fit_steps=50,
            fit_steps=10,
            rollouts=32,
            horizon=3,
        )
    else:
        budget, at, episodes, dyna = 10_000, [5_000, 10_000], 10, DynaConfig()
    if args.rollouts is not None:
        dyna = dataclasses.replace(dyna, rollouts=args.rollouts)
    variants = args.variants
    runs: dict[str, list] = {v: [] for v in variants}
    for seed in args.seeds:
        for variant in variants:
            print(f"seed {seed} {variant}", flush=True)
            runs[variant].append(run(variant, seed, budget, at, episodes, dyna))
    summary = {}
    for variant, rows in runs.items():
        summary[variant] = {}
        for step in at:
            returns = np.array([r["eval"][str(step)]["return_mean"] for r in rows])
            summary[variant][str(step)] = {
                "mean": float(returns.mean()),
                "std": float(returns.std()),
                "per_seed": returns.tolist(),
            }
        summary[variant]["wall_seconds_mean"] = float(np.mean([r["wall_seconds"] for r in rows]))
    report = {
        "command": "python " + " ".join(sys.argv),
        "env_id": ENV_ID,
        "real_step_budget": budget,
        "eval_episodes": episodes,
        "dyna_config": {k: v for k, v in vars(dyna).items() if k != "fit"},
        "seeds": args.seeds,
        "summary": summary,
        "runs": runs,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "stable_baselines3": stable_baselines3.__version__,
        },
        "machine": machine_info(),
        "date": time.strftime("%Y-%m-%d"),
    }
    print(json.dumps(summary, indent=1))
    if not args.quick:
        Path(args.out).write_text(json.dumps(report, indent=2))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
