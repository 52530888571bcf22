"""World-model fitting speed: one process vs torchrun with 2 processes, same global batch.

Fits the default LoopWM on the README dataset (20k random InvertedPendulum-v5
transitions) for the same number of steps and global batch, once in one process with
``--threads`` torch threads and once with ``torchrun --nproc-per-node 2`` (gloo, one
thread per process), and records training seconds and held-out error of both.

    python benchmarks/ddp_speedup.py            # writes results/ddp_speedup.json
    python benchmarks/ddp_speedup.py --quick    # smoke run, writes nothing
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from machine import machine_info

from loopwm.collect import collect

RESULTS = Path(__file__).parent / "results" / "ddp_speedup.json"
DATA = Path("runs/bench/pendulum-20k")  # shared with fit_baselines.py


def fit_command(data: Path, out: Path, steps: int, batch: int) -> list[str]:
    return [
        "-m", "loopwm", "fit", "--data", str(data), "--out", str(out), "--steps", str(steps),
        "--batch-size", str(batch), "--eval-every", "0", "--no-tensorboard", "--quiet",
    ]  # fmt: skip


def run(command: list[str], threads: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run([sys.executable, *command], check=True, env=env, capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=64, help="global batch")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    steps = 20 if args.quick else args.steps
    if not (DATA / "meta.json").is_file():
        collect("InvertedPendulum-v5", 20_000, DATA, seed=0, progress=False)
    results = {
        "command": "python " + " ".join(sys.argv),
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "machine": machine_info(),
        "steps": steps,
        "global_batch": args.batch_size,
        "runs": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        setups = {
            "1 process, 1 thread": ([], 1),
            "1 process, 2 threads": ([], 2),
            "torchrun 2 processes, 1 thread each": (
                ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"],
                1,
            ),
        }
        for name, (launcher, threads) in setups.items():
            out = Path(tmp) / name.replace(" ", "_").replace(",", "")
            command = fit_command(DATA, out, steps, args.batch_size)
            if launcher:
                command = launcher + command  # torchrun runs `-m loopwm fit ...` per process
            run(command, threads)
            metrics = json.loads((out / "metrics.json").read_text())
            results["runs"][name] = {
                "train_seconds": metrics["train_seconds"],
                "heldout_obs_mse_1": metrics["heldout"]["obs_mse_1"],
                "heldout_obs_mse_K": metrics["heldout"]["obs_mse_K"],
            }
            print(name, results["runs"][name], flush=True)
    base = results["runs"]["1 process, 1 thread"]["train_seconds"]
    for record in results["runs"].values():
        record["speedup_vs_1_thread"] = round(base / record["train_seconds"], 2)
    if not args.quick:
        RESULTS.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
