"""Held-out errors of LoopWM and every baseline on the README example.

The README example: 20,000 random-policy InvertedPendulum-v5 transitions, each model fitted
with ``loopwm fit``'s defaults (preset ``default``, 2,000 steps), 20% of episodes held out.
Every model sees the same data, split and batches for a given seed.

    python benchmarks/fit_baselines.py            # 3 seeds, writes results/fit_baselines.json
                                                  # (one torch thread: timings are per core)
    python benchmarks/fit_baselines.py --quick    # smoke run, tiny models, nothing written
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from machine import machine_info

from loopwm.collect import collect
from loopwm.config import FitConfig
from loopwm.fit import fit
from loopwm.replay import Replay

RESULTS = Path(__file__).parent / "results" / "fit_baselines.json"
VARIANTS = {
    "loopwm": ("loopwm", {}),
    "loopwm (truncated grad)": ("loopwm", {"grad_mode": "truncated"}),
    "loopwm-fixed": ("loopwm-fixed", {}),
    "loopwm-gate": ("loopwm-gate", {}),
    "mlp": ("mlp", {}),
    "gru": ("gru", {}),
}
METRICS = ("obs_mse_1", "obs_mse_K", "reward_mse_1", "iters_mean", "iters_max")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run, writes nothing")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--data", default="runs/bench/pendulum-20k")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: leaves a core)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    steps, data_steps, preset = (20, 2000, "tiny") if args.quick else (2000, 20_000, "default")
    data = Path(args.data + ("-quick" if args.quick else ""))
    if not (data / "meta.json").exists():
        collect("InvertedPendulum-v5", data_steps, data, seed=0, progress=False)
    replay = Replay.load(data)

    runs: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    for seed in args.seeds:
        cfg = FitConfig(steps=steps, eval_every=0, seed=seed)
        for name, (model, overrides) in VARIANTS.items():
            _, result = fit(
                replay,
                model=model,
                preset=preset,
                model_overrides=overrides,
                config=cfg,
                progress=False,
            )
            held = result["heldout"]
            row = {k: held[k] for k in METRICS}
            row.update(
                seed=seed,
                parameters=result["parameters"],
                train_seconds=result["train_seconds"],
                copy_mse_1=held["copy_mse_1"],
                copy_mse_K=held["copy_mse_K"],
                contraction_bound=result.get("contraction_bound"),
            )
            runs[name].append(row)
            print(
                f"seed {seed} {name:24s} 1-step {held['obs_mse_1']:.4f} "
                f"{held['horizon']}-step {held['obs_mse_K']:.4f} iters {held['iters_mean']:.2f} "
                f"({result['train_seconds']:.0f}s)",
                flush=True,
            )

    summary = {}
    for name, rows in runs.items():
        summary[name] = {"parameters": rows[0]["parameters"]}
        for key in (*METRICS, "train_seconds", "copy_mse_1", "copy_mse_K"):
            values = np.array([r[key] for r in rows], dtype=float)
            summary[name][key] = {"mean": float(values.mean()), "std": float(values.std())}
    report = {
        "command": "python benchmarks/fit_baselines.py" + (" --quick" if args.quick else ""),
        "data": {
            "env_id": "InvertedPendulum-v5",
            "transitions": len(replay),
            "episodes": replay.num_episodes,
            "policy": "random",
            "collect_seed": 0,
        },
        "fit": {
            "steps": steps,
            "preset": preset,
            "eval_horizon": FitConfig().eval_horizon,
            "units": "MSE per observation dimension, standardised by training-set std",
        },
        "seeds": args.seeds,
        "summary": summary,
        "runs": runs,
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "machine": machine_info(),
        "date": time.strftime("%Y-%m-%d"),
    }
    if args.quick:
        print(json.dumps(summary, indent=1)[:2000])
    else:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(report, indent=2))
        print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
