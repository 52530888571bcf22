"""Why a CartPole-v1 run of ``loopwm train`` ends its episodes: per evaluation episode.

For the run's final agent, acting greedily on the real env from the evaluation seeds:
how long each episode lasts and why it ends (the cart past the track's end at |x| > 2.4,
the pole past 12 degrees, or the 500-step limit), where the cart and the pole are at the
end, and what the agent itself believes along the way: the critic's value, and the product
of the world model's predicted continuations over a 40-step greedy rollout imagined from
each real state. A stalled run whose episodes end at the track's end while both fall
towards it knows the edge is fatal and still does not steer away from it.

    python benchmarks/cartpole_drift.py runs/bench/solve_ab/CartPole-v1/defaults_2 \\
        --out benchmarks/results/cartpole_drift.json
    python benchmarks/cartpole_drift.py --quick   # a tiny run trained and read, nothing kept
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from machine import provenance

from loopwm.agents import DreamerConfig, TrainConfig, train
from loopwm.agents.dreamer import symexp
from loopwm.agents.run import load_agent
from loopwm.agents.train import EVAL_SEED_OFFSET

X_LIMIT, THETA_LIMIT = 2.4, 12 * 2 * np.pi / 360  # CartPole-v1's termination thresholds
IMAGINED = 40  # steps of the greedy rollout imagined from every real state


def beliefs(agent, obs: np.ndarray) -> tuple[float, float]:
    """The critic's value of ``obs`` and the product of the model's predicted
    continuations over a greedy rollout of IMAGINED steps imagined from it."""
    wm = agent.world_model
    with torch.no_grad():
        latent = wm.encode(torch.as_tensor(obs, dtype=torch.float32, device=agent.device)[None])
        value = float(symexp(agent.critic(latent))[0])
        survive = 1.0
        for _ in range(IMAGINED):
            out = wm.step(latent, agent.actor.mode(latent))
            latent, survive = out.latent, survive * float(out.cont[0])
    return value, survive


def episode(agent, env, seed: int) -> dict:
    obs, _ = env.reset(seed=seed)
    agent.reset()
    states, values, survival, done = [], [], [], False
    while not done:
        value, survive = beliefs(agent, obs)
        values.append(value)
        survival.append(survive)
        obs, _, terminated, truncated, _ = env.step(agent.act(obs, explore=False))
        states.append(obs)
        done = terminated or truncated
    x, theta = float(obs[0]), float(obs[2])
    cause = "track" if abs(x) > X_LIMIT else "pole" if abs(theta) > THETA_LIMIT else "limit"
    xs = np.array([s[0] for s in states])
    near = np.abs(xs) >= 1.5  # the beliefs where the cart is well out, if it got there
    return {
        "length": len(states),
        "cause": cause,
        "final_x": round(x, 3),
        "final_theta": round(theta, 3),
        "mean_theta": round(float(np.mean([s[2] for s in states])), 3),
        "value_start": round(values[0], 2),
        "value_end": round(values[-1], 2),
        "value_at_abs_x_over_1.5": round(float(np.mean(np.array(values)[near])), 2)
        if near.any()
        else None,
        "imagined_survival_start": round(survival[0], 3),
        "imagined_survival_at_abs_x_over_1.5": round(float(np.mean(np.array(survival)[near])), 3)
        if near.any()
        else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "run", type=Path, nargs="?", help="a loopwm train run folder of CartPole-v1"
    )
    parser.add_argument("--episodes", type=int, default=5)
    parser.add_argument("--out", type=Path, help="results JSON (printed only if not given)")
    parser.add_argument(
        "--quick", action="store_true", help="read a tiny run trained here; writes nothing"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.quick:
        with tempfile.TemporaryDirectory() as folder:
            config = TrainConfig(
                env_id="CartPole-v1",
                steps=300,
                prefill=100,
                pretrain=5,
                eval_every=300,
                agent=DreamerConfig(preset="tiny"),
            )
            train(config, folder, progress=False, tensorboard=False, video=False)
            args.run, args.episodes, args.out = Path(folder), 1, None
            return report(args)
    if args.run is None:
        parser.error("give a run folder, or --quick")
    return report(args)


def report(args: argparse.Namespace) -> int:
    agent, config, counters = load_agent(args.run)
    if config.env_id != "CartPole-v1":
        raise SystemExit(f"{args.run} is a run of {config.env_id}, not CartPole-v1")
    env = config.make_env()
    episodes = [
        episode(agent, env, config.seed + EVAL_SEED_OFFSET + i) for i in range(args.episodes)
    ]
    env.close()
    for i, row in enumerate(episodes):
        print(f"episode {i}: {json.dumps(row)}")
    if args.out:
        result = {
            **provenance(),
            "run": str(args.run),
            "env_steps": counters["env_steps"],
            "imagined_steps": IMAGINED,
            "episodes": episodes,
        }
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
