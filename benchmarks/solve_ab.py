"""Two ``loopwm train`` configurations side by side: real steps and wall time to solve.

For every seed the two configurations train at once, each in its own process with one
torch thread (so they share the machine evenly), until the first evaluation (every 500
steps, 5 deterministic episodes) reaches the env's reward threshold or the step budget
runs out. Recorded per run: real steps, updates, wall seconds, milliseconds per update
and the evaluation curve, from the run folder's ``metrics.json``, and the final world
model's mean predicted continuation on the run's terminal transitions and on the rest.

A configuration is ``NAME`` or ``NAME=ARGS``, ARGS being ``loopwm train`` flags; the
default pair is the agent's actor-critic width and imagination batch before (256, 256)
and after (128, 128) they became the defaults:

    python benchmarks/solve_ab.py                           # InvertedPendulum-v5, 6 seeds
    python benchmarks/solve_ab.py --configs defaults "ratio25=--train-ratio 0.25"
    python benchmarks/solve_ab.py --quick                   # smoke run, writes nothing

A run's milliseconds per update include its evaluations and whatever the other process
leaves it: once one of the pair has stopped, the other runs alone, and faster.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
from pathlib import Path

import numpy as np
from machine import provenance, run_side_by_side

RESULTS = Path(__file__).parent / "results" / "solve_ab.json"
RUNS = Path("runs/bench/solve_ab")
DEFAULT_CONFIGS = (
    "wide=--agent.hidden-dim 256 --agent.imagine-batch 256",
    "defaults",
)
QUICK_ARGS = "--steps 300 --prefill 100 --pretrain 5 --eval-every 150 --agent.preset tiny"


def parse_config(text: str) -> tuple[str, list[str]]:
    """``NAME=ARGS`` (or ``NAME``) as the name and its ``loopwm train`` flags."""
    name, _, args = text.partition("=")
    if not name or "/" in name:
        raise SystemExit(f"a configuration is NAME or NAME=ARGS, got {text!r}")
    return name, shlex.split(args)


def continuation(run_dir: Path) -> dict | None:
    """How well the run's final world model knows where episodes end: its mean predicted
    continuation on the run's own terminal transitions (ideally 0) and on the rest
    (ideally 1); ``None`` for a run without terminal transitions."""
    import torch

    from loopwm import load
    from loopwm.replay import Replay

    replay = Replay.load(run_dir / "replay")
    terminal = replay.terminated.astype(bool)
    if not terminal.any():
        return None
    model = load(run_dir / "model.safetensors").eval()
    cont = []
    with torch.no_grad():
        for start in range(0, len(terminal), 4096):
            obs = torch.as_tensor(replay.obs[start : start + 4096], dtype=torch.float32)
            action = torch.as_tensor(replay.action[start : start + 4096], dtype=torch.float32)
            cont.append(model.step(model.encode(obs), action).cont.numpy())
    cont = np.concatenate(cont)
    return {
        "terminal": round(float(cont[terminal].mean()), 3),
        "other": round(float(cont[~terminal].mean()), 3),
        "terminals": int(terminal.sum()),
    }


def summary(run_dir: Path) -> dict:
    """The figures of one finished run, from its ``metrics.json``."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    updates = metrics["updates"]
    return {
        "env_steps": metrics["env_steps"],
        "updates": updates,
        "wall_seconds": metrics["wall_seconds"],
        "ms_per_update": round(1e3 * metrics["wall_seconds"] / updates, 1) if updates else None,
        "solved": metrics["stopped"] == "reward_threshold",
        "continuation": continuation(run_dir),
        "curve": [
            {k: e[k] for k in ("env_steps", "wall_seconds", "return_mean")}
            for e in metrics["evaluations"]
        ],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="InvertedPendulum-v5")
    parser.add_argument("--configs", nargs=2, default=list(DEFAULT_CONFIGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4, 5])
    parser.add_argument("--steps", type=int, default=10_000, help="real-step budget per run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--quick", action="store_true", help="smoke run, writes nothing")
    parser.add_argument(
        "--collect",
        type=Path,
        help="train nothing: read the runs NAME_SEED already in this folder (made by the "
        "same loopwm train commands) into the JSON",
    )
    args = parser.parse_args()
    configs = dict(parse_config(text) for text in args.configs)
    if len(configs) != 2:
        raise SystemExit(f"two configurations with different names, got {args.configs}")
    extra = shlex.split(QUICK_ARGS) if args.quick else ["--steps", str(args.steps)]
    seeds = args.seeds[:1] if args.quick else args.seeds
    root = args.collect or RUNS / ("quick" if args.quick else args.env.replace("/", "_"))
    results = {**provenance(), "env_id": args.env, "configs": args.configs, "runs": {}}
    if args.collect:
        results["collected_from"] = str(args.collect)
    results["machine"]["torch_threads"] = 1  # each run's, set through OMP_NUM_THREADS
    os.environ["OMP_NUM_THREADS"] = "1"
    for seed in seeds:
        if not args.collect:
            commands = []
            for name, flags in configs.items():
                run_dir = root / f"{name}_{seed}"
                shutil.rmtree(run_dir, ignore_errors=True)
                commands.append([
                    sys.executable, "-m", "loopwm", "train", "--env", args.env,
                    "--seed", str(seed), "--no-tensorboard", "--out", str(run_dir),
                    *extra, *flags,
                ])  # fmt: skip
            print(f"seed {seed}: {', '.join(configs)} side by side", flush=True)
            if code := run_side_by_side(commands, jobs=2):
                return code
        for name in configs:
            record = summary(root / f"{name}_{seed}")
            results["runs"].setdefault(name, {})[str(seed)] = record
            print(
                f"  {name}: {record['env_steps']} steps, {record['wall_seconds']:.0f} s, "
                f"{record['ms_per_update']} ms/update, solved {record['solved']}",
                flush=True,
            )
        if not args.quick:  # after every seed: an interrupted benchmark keeps what finished
            args.out.write_text(json.dumps(results, indent=1) + "\n")
    for name, runs in results["runs"].items():
        steps = [r["env_steps"] for r in runs.values()]
        wall = [r["wall_seconds"] for r in runs.values()]
        print(
            f"{name}: steps median {np.median(steps):.0f} (mean {np.mean(steps):.0f}), "
            f"wall median {np.median(wall):.0f} s (mean {np.mean(wall):.0f})"
        )
    if not args.quick:
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
