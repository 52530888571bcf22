"""Real-env return of SAC trained with LoopWM imagination (Dyna/MBPO-style) vs plain SAC.

Same real-env step budget, same seeds, evaluated on the real env (InvertedPendulum-v5 unless
``--env`` says otherwise) at 5k and 10k real steps (``--at``; 10 deterministic episodes
each). Variants:

- ``sac``: stable-baselines3 SAC, default hyperparameters (one gradient step per env step).
- ``sac-utd2``: the same with two gradient steps per env step (real data only): the
  update-ratio control for the Dyna variant.
- ``sac-dyna``: two gradient steps per env step, plus :class:`DynaCallback` adding
  imagined transitions from a LoopWM refitted every 250 real steps.

    python benchmarks/dyna_sac.py            # 3 seeds, writes results/dyna_sac.json
    python benchmarks/dyna_sac.py --quick    # smoke run, writes nothing
    python benchmarks/dyna_sac.py --variants sac-dyna --rollouts 50 \
        --out benchmarks/results/dyna_sac_rollouts50.json   # fewer imagined transitions
    python benchmarks/dyna_sac.py --variants sac-dyna --at 5000 \
        --dyna '{"ensemble": 5, "ensemble_step": "random"}' --out ...   # any DynaConfig field
    python benchmarks/dyna_sac.py --env HalfCheetah-v5 --at 10000 20000 \
        --variants sac-utd2 sac-dyna --seeds 0 2 --out /tmp/a.json   # and --seeds 1 ...
    python benchmarks/dyna_sac.py --merge /tmp/a.json /tmp/b.json --out ...  # one report

``--merge`` joins reports of the same benchmark run in parallel processes (one per core,
split by seed or by variant) into one, with the summary recomputed over all their seeds.
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
from loopwm.errors import ConfigError

RESULTS = Path(__file__).parent / "results" / "dyna_sac.json"
ENV_ID = "InvertedPendulum-v5"
AT = [5_000, 10_000]  # real steps at which every variant is evaluated; the last is the budget


class EvalAt(BaseCallback):
    """Evaluate on the real env when the step count reaches each checkpoint."""

    def __init__(self, env_id: str, at: list[int], episodes: int, seed: int) -> None:
        super().__init__()
        self.env_id, self.at, self.episodes, self.seed = env_id, sorted(at), episodes, seed
        self.results: dict[int, dict] = {}
        self.started = time.perf_counter()

    def _on_step(self) -> bool:
        if self.at and self.num_timesteps >= self.at[0]:
            step = self.at.pop(0)
            env = Monitor(gym.make(self.env_id))
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


def run(
    env_id: str, variant: str, seed: int, at: list[int], episodes: int, dyna: DynaConfig
) -> dict:
    budget = max(at)
    env = Monitor(gym.make(env_id))
    agent = SAC(
        "MlpPolicy", env, seed=seed, device="cpu", gradient_steps=1 if variant == "sac" else 2
    )
    evaluator = EvalAt(env_id, at, episodes, seed)
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


def summarise(runs: dict[str, list], at: list[int]) -> dict:
    """Mean, std and per-seed real return of every variant at every evaluation step."""
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
    return summary


def merge(paths: list[str]) -> dict:
    """One report from reports of the same benchmark (env, budget, evaluation and Dyna
    settings) run in parallel processes, split by seed or by variant; refuses reports
    that differ, a run given twice, and variants that end up with different seeds."""
    reports = [json.loads(Path(p).read_text()) for p in paths]
    keys = ("env_id", "real_step_budget", "eval_episodes", "dyna_config")
    first = reports[0]
    for path, report in zip(paths[1:], reports[1:], strict=True):
        differ = [k for k in keys if report.get(k) != first.get(k)]
        if differ:
            raise SystemExit(f"{path} differs from {paths[0]} in {differ}")
    runs: dict[str, list] = {}
    for report in reports:
        for variant, rows in report["runs"].items():
            runs.setdefault(variant, []).extend(rows)
    seeds = None
    for variant, rows in runs.items():
        rows.sort(key=lambda row: row["seed"])
        have = [row["seed"] for row in rows]
        if len(set(have)) != len(have):
            raise SystemExit(f"{variant}: the reports repeat seeds {have}")
        if seeds is not None and have != seeds:
            raise SystemExit(f"{variant} has seeds {have}, another variant {seeds}")
        seeds = have
    at = sorted(int(step) for step in next(iter(runs.values()))[0]["eval"])
    return {
        **first,
        "command": [r["command"] for r in reports],
        "seeds": seeds,
        "summary": summarise(runs, at),
        "runs": runs,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--env", default=ENV_ID, help=f"gymnasium id (default {ENV_ID})")
    parser.add_argument(
        "--at", type=int, nargs="+", default=AT, help="evaluation steps; the last is the budget"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variants", nargs="+", default=["sac", "sac-utd2", "sac-dyna"])
    parser.add_argument("--rollouts", type=int, help="DynaConfig.rollouts (default 400)")
    parser.add_argument(
        "--dyna",
        type=json.loads,
        default={},
        metavar="JSON",
        help='other DynaConfig fields, e.g. \'{"ensemble": 5, "ensemble_step": "random"}\'',
    )
    parser.add_argument("--merge", nargs="+", metavar="JSON", help="join these reports")
    parser.add_argument("--out", default=str(RESULTS), help="results JSON")
    args = parser.parse_args()
    if args.merge:
        report = merge(args.merge)
        print(json.dumps(report["summary"], indent=1))
        Path(args.out).write_text(json.dumps(report, indent=2))
        print(f"wrote {args.out}")
        return 0
    torch.set_num_threads(args.threads)
    at = sorted(args.at)
    if at[0] < 1:
        raise SystemExit(f"--at needs positive step counts, got {at}")
    if args.quick:
        args.seeds = args.seeds[:1]
        at, episodes = [300, 600], 2
        dyna = DynaConfig(
            warmup_steps=200,
            refit_every=200,
            first_fit_steps=50,
            fit_steps=10,
            rollouts=32,
            horizon=3,
        )
    else:
        episodes, dyna = 10, DynaConfig()
    if args.rollouts is not None:
        dyna = dataclasses.replace(dyna, rollouts=args.rollouts)
    if not isinstance(args.dyna, dict):
        raise SystemExit(f"--dyna takes a JSON object of DynaConfig fields, got {args.dyna!r}")
    fields = {f.name for f in dataclasses.fields(DynaConfig)} - {"fit"}
    if unknown := sorted(set(args.dyna) - fields):
        raise SystemExit(f"--dyna: {unknown} are not DynaConfig fields ({sorted(fields)})")
    try:
        dyna = dataclasses.replace(dyna, **args.dyna)
    except (ConfigError, TypeError, ValueError) as err:
        raise SystemExit(f"--dyna: {err}") from None
    runs: dict[str, list] = {v: [] for v in args.variants}
    for seed in args.seeds:
        for variant in args.variants:
            print(f"seed {seed} {variant}", flush=True)
            runs[variant].append(run(args.env, variant, seed, at, episodes, dyna))
    summary = summarise(runs, at)
    report = {
        "command": "python " + " ".join(sys.argv),
        "env_id": args.env,
        "real_step_budget": max(at),
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
