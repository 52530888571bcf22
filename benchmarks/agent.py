"""Real-env return of the DreamerAgent (`loopwm train`) against SB3 SAC, same budget.

For every env, variant and seed: train online for the env's real-step budget, evaluating
the greedy policy on the real env (5 episodes, the same evaluation seeds for every
variant) at fixed step counts. Variants:

- ``dreamer``: ``loopwm train`` defaults (LoopWM ``small``, actor acts, no planner).
- ``dreamer-mppi``: the same agent planning with MPPI at every action (critic as
  terminal value): what planning adds.
- ``sac``: stable-baselines3 SAC with its default hyperparameters.
- ``dqn``, ``ppo``: stable-baselines3's, defaults, for envs with Discrete actions.

    python benchmarks/agent.py                         # InvertedPendulum-v5 + Pendulum-v1
    python benchmarks/agent.py --envs HalfCheetah-v5 --seeds 0 --out results/agent_cheetah.json
    python benchmarks/agent.py --envs CartPole-v1 --variants dreamer dqn ppo \
        --train-flags "--agent.gamma 0.997" --out benchmarks/results/agent_cartpole.json
    python benchmarks/agent.py --envs InvertedPendulum-v5 pixels/InvertedPendulum-v5 \
        --variants dreamer --stop-at-threshold --threads 2 --out benchmarks/results/pixels.json
    python benchmarks/agent.py --envs MinAtar/Breakout-v1 --variants dqn ppo --threads 1 \
        --out benchmarks/results/agent_minatar_sb3.json   # the loopwm[minatar] extra
    python benchmarks/agent.py --envs dm_control/cartpole-swingup-v0 --variants dreamer sac \
        --out benchmarks/results/agent_dmc.json       # the loopwm[dmc] extra; action repeat 2
    python benchmarks/agent.py --quick                 # smoke run, writes nothing

``--train-flags`` lays ``loopwm train`` flags over the agent's config (its runs are
recorded as ``dreamer FLAGS``, in their own folders). An agent run checkpoints at every
evaluation; ``--resume`` continues each run from its last
checkpoint instead of starting it again, so a 100k-step run can span several invocations.

Results are rewritten after every run, so an interrupted benchmark keeps what finished.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from machine import provenance
from stable_baselines3 import DQN, PPO, SAC
from stable_baselines3.common.callbacks import BaseCallback

from loopwm.agents import (
    DreamerConfig,
    PlannerConfig,
    SB3Actor,
    TrainConfig,
    evaluate_agent,
    train,
)
from loopwm.agents.train import EVAL_SEED_OFFSET
from loopwm.cli_config import add_config_arguments, config_from_args
from loopwm.envs import default_action_repeat, make_env  # pixel ids (pixels/...) too

RESULTS = Path(__file__).parent / "results" / "agent.json"
ALGOS = {"sac": SAC, "dqn": DQN, "ppo": PPO}
RUNS = Path("runs/bench/agent")
EVAL_EPISODES = 5
BUDGETS = {  # env: (real steps, evaluate every)
    "InvertedPendulum-v5": (5_000, 1_000),
    "Pendulum-v1": (10_000, 2_000),
    "HalfCheetah-v5": (50_000, 10_000),
    "Hopper-v5": (50_000, 10_000),
    "Walker2d-v5": (50_000, 10_000),
    "CartPole-v1": (10_000, 1_000),
    "pixels/InvertedPendulum-v5": (10_000, 1_000),  # 64x64 frames, 3 stacked
    "MinAtar/Breakout-v1": (100_000, 10_000),  # 10x10 binary planes, Discrete(3)
    # DeepMind Control (the loopwm[dmc] extra) at TD-MPC2's budget: 100k agent steps of
    # 2 env steps each (its DMC envs repeat every action twice and count agent steps)
    **{
        f"dm_control/{task}-v0": (100_000, 10_000)
        for task in ("cartpole-swingup", "reacher-easy", "cheetah-run", "walker-walk")
    },
}

VARIANTS = ("dreamer", "sac", "dreamer-mppi", "dqn", "ppo")
SB3_VARIANTS = ("sac", "dqn", "ppo")
CONTINUOUS_ONLY = ("sac", "dreamer-mppi")  # need Box actions
DISCRETE_ONLY = ("dqn",)  # needs Discrete actions


class EvalEvery(BaseCallback):
    """Evaluate SAC's deterministic policy like ``loopwm train`` evaluates its agent."""

    def __init__(self, env_id: str, every: int, seed: int) -> None:
        super().__init__()
        self.env = make_env(env_id, action_repeat=default_action_repeat(env_id))
        self.every, self.seed = every, seed
        self.records: list[dict] = []
        self.started = time.perf_counter()

    def _on_step(self) -> bool:
        if self.num_timesteps % self.every == 0:
            seed = self.seed + EVAL_SEED_OFFSET  # as loopwm train evaluates
            returns = evaluate_agent(SB3Actor(self.model), self.env, EVAL_EPISODES, seed=seed)
            self.records.append(_record(self.num_timesteps, returns, self.started))
        return True


def _record(step: int, returns: list[float], started: float) -> dict:
    return {
        "env_steps": step,
        "wall_seconds": round(time.perf_counter() - started, 2),
        "return_mean": float(np.mean(returns)),
        "return_std": float(np.std(returns)),
        "returns": returns,
    }


def run_sb3(algo: str, env_id: str, steps: int, every: int, seed: int) -> dict:
    started = time.perf_counter()
    callback = EvalEvery(env_id, every, seed)
    # make_env: the env loopwm learns from (pixel and MinAtar ids, their wrappers)
    env = make_env(env_id, action_repeat=default_action_repeat(env_id))
    model = ALGOS[algo]("MlpPolicy", env, seed=seed, device="cpu", verbose=0)
    model.learn(steps, callback=callback)
    return {"curve": callback.records, "wall_seconds": round(time.perf_counter() - started, 2)}


def dreamer_config(
    env_id: str,
    steps: int,
    every: int,
    seed: int,
    planner: str = "none",
    quick: bool = False,
    stop_at_threshold: bool = False,
    model: str = "loopwm",
    model_overrides: dict | None = None,
) -> TrainConfig:
    """``loopwm train``'s defaults with the benchmark's budget, schedule and seed; the
    world model's ``model_overrides`` are laid over the agent's default ones, as
    ``--wm.*`` flags are."""
    agent = DreamerConfig(model=model, planner=PlannerConfig(kind=planner))
    agent = agent.with_model_overrides(model_overrides or {})
    return TrainConfig(
        env_id=env_id,
        steps=steps,
        action_repeat=default_action_repeat(env_id),
        eval_every=every,
        eval_episodes=EVAL_EPISODES,
        checkpoint_every=every,
        seed=seed,
        # learning curves over the whole budget, like SAC's (unless told to stop)
        stop_at_threshold=stop_at_threshold,
        agent=agent,
        # --quick: learn after 200 steps, so the smoke run exercises the updates too
        **({"prefill": 200, "pretrain": 10} if quick else {}),
    )


def run_dreamer(
    env_id: str,
    steps: int,
    every: int,
    seed: int,
    planner: str,
    quick: bool = False,
    stop_at_threshold: bool = False,
    model: str = "loopwm",
    model_overrides: dict | None = None,
    resume: bool = False,
    flags: list[str] | None = None,
) -> dict:
    name = f"dreamer-{planner}" if model == "loopwm" else f"dreamer-{planner}-{model}"
    name += "".join(f"-{k}={v}" for k, v in (model_overrides or {}).items())
    name += "".join(f"-{flag.lstrip('-')}" for flag in flags or []).replace("/", "_")
    # a smoke run keeps out of the real runs' folders (it would wipe or resume them)
    run_dir = (RUNS / "quick" if quick else RUNS) / env_id / name / f"seed{seed}"
    # --resume continues a run that an earlier invocation left with a checkpoint (the
    # same config: train refuses any other change than the budget); otherwise start anew.
    resume = resume and (run_dir / "checkpoint.json").is_file()
    if not resume:
        shutil.rmtree(run_dir, ignore_errors=True)
    config = dreamer_config(
        env_id, steps, every, seed, planner, quick, stop_at_threshold, model, model_overrides
    )
    if flags:
        config = with_train_flags(config, flags)
    started = time.perf_counter()
    summary = train(config, run_dir, resume=resume, progress=False, tensorboard=False, video=False)
    curve = [
        {k: e[k] for k in ("env_steps", "wall_seconds", "return_mean", "return_std", "returns")}
        for e in summary["evaluations"]
    ]
    return {
        "curve": curve,
        # a resumed run's time is the run's own count up to each checkpoint, all
        # invocations together (steps redone after a kill count once)
        "wall_seconds": summary["wall_seconds"]
        if resume
        else round(time.perf_counter() - started, 2),
        **({"resumed": True} if resume else {}),
        **({"train_flags": flags} if flags else {}),
        "stopped": summary["stopped"],
        "updates": summary["updates"],
        "contraction_bound": summary.get("contraction_bound"),
    }


def with_train_flags(config: TrainConfig, flags: list[str]) -> TrainConfig:
    """``config`` with ``loopwm train`` flags applied, parsed as ``loopwm train`` parses
    them (a flag it does not know ends the benchmark with its usage)."""
    parser = argparse.ArgumentParser(prog="--train-flags", add_help=False)
    add_config_arguments(parser, TrainConfig)
    return config_from_args(TrainConfig, parser.parse_args(flags), config)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=["InvertedPendulum-v5", "Pendulum-v1"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, help="override every env's real-step budget")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--quick", action="store_true", help="tiny budgets, writes nothing")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the agent's runs from their last checkpoint under runs/bench/agent "
        "(a long run can span several invocations); runs without one start anew",
    )
    parser.add_argument(
        "--train-flags",
        default="",
        help='loopwm train flags over the agent\'s config, e.g. "--agent.gamma 0.997"',
    )
    parser.add_argument(
        "--stop-at-threshold",
        action="store_true",
        help="end the agent's runs at the first evaluation reaching the env's threshold",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    flags = shlex.split(args.train_flags)
    with_train_flags(TrainConfig(), flags)  # refused now, not after the first runs
    results = {
        **provenance(),
        "eval_episodes": EVAL_EPISODES,
        "runs": {},
    }
    if args.quick:  # one env, one seed, a short budget
        args.envs, args.seeds = args.envs[:1], args.seeds[:1]
    if args.out.is_file() and not args.quick:
        results["runs"] = json.loads(args.out.read_text()).get("runs", {})
    for env_id in args.envs:
        steps, every = BUDGETS.get(env_id, (10_000, 2_000))
        if args.steps:
            steps, every = args.steps, min(every, args.steps)
        if args.quick:
            steps, every = 600, 300
        discrete = isinstance(make_env(env_id).action_space, gym.spaces.Discrete)
        for variant in args.variants:
            if variant in (DISCRETE_ONLY if not discrete else CONTINUOUS_ONLY):
                print(f"{env_id}: {variant} skipped (it cannot act in this action space)")
                continue
            for seed in args.seeds:
                print(f"{env_id} {variant} seed {seed}: {steps} real steps", flush=True)
                if variant in SB3_VARIANTS:
                    record = run_sb3(variant, env_id, steps, every, seed)
                else:
                    planner = "mppi" if variant == "dreamer-mppi" else "none"
                    # Planning costs ~20 ms per action: evaluate it half as often.
                    gap = every if planner == "none" else min(steps, 2 * every + every // 2)
                    record = run_dreamer(
                        env_id, steps, gap, seed, planner, args.quick, args.stop_at_threshold,
                        resume=args.resume, flags=flags,
                    )  # fmt: skip
                record["steps"] = steps
                last = record["curve"][-1]
                print(
                    f"  return {last['return_mean']:.1f} +- {last['return_std']:.1f} "
                    f"in {record['wall_seconds']:.0f} s",
                    flush=True,
                )
                key = (
                    f"{variant} {args.train_flags}"
                    if flags and variant.startswith("dreamer")
                    else variant
                )
                results["runs"].setdefault(env_id, {}).setdefault(key, {})[str(seed)] = record
                if not args.quick:
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
