"""How the loop spends computation: halting, test-time iterations, long-rollout stability.

Models are fitted on the fit example's data (20k random InvertedPendulum-v5 transitions,
held-out episodes for every measurement):

- **halting**: held-out 1-step and K-step error against mean iterations per step for
  certified halting (sweep of ``tol``), fixed iteration counts (``tol=0``: never halts),
  and the learned gate of the LoopWM paper's variant (sweep of its threshold).
- **test-time iterations**: error as the iteration cap goes from 1 to 4x the training
  mean (certified halting underneath), and the largest latent norm seen.
- **stability**: 10,000-step imagined rollouts under uniform random actions from 1,000
  held-out start states: the largest latent norm and the fraction of rollouts that
  produce NaN/inf, for LoopWM, the paper's variant, the untied MLP stack and the GRU,
  with LoopWM's proven bound alongside.

    python benchmarks/loop_behaviour.py --threads 2   # 3 seeds of every model
    python benchmarks/loop_behaviour.py --quick  # smoke run, writes nothing
"""

from __future__ import annotations

import argparse
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
from loopwm.io import write_json
from loopwm.replay import Replay
from loopwm.training import batch_to_tensors

RESULTS = Path(__file__).parent / "results" / "loop_behaviour.json"
DATA = Path("runs/bench/pendulum-20k")  # shared with fit_baselines.py
TOLS = [1.0, 3e-1, 1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4]
FIXED = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32]
GATE_THRESHOLDS = [0.3, 0.5, 0.7, 0.9]


@torch.no_grad()
def errors(model, windows: dict, *, tol: float, max_iters: int) -> dict:
    """Held-out open-loop errors (standardised obs) and loop statistics at one setting."""
    latent = model.encode(windows["obs0"])
    rollout = model.imagine(latent, windows["action"], tol=tol, max_iters=max_iters)
    pred = model.decode(rollout.latent.flatten(0, 1), standardized=True)
    pred = pred.reshape(windows["next_obs"].shape)  # (B, K, O)
    err = (pred - model.standardize(windows["next_obs"])).pow(2).mean(dim=(0, 2))  # (K,)
    return {
        "iters_mean": float(rollout.iters.float().mean()),
        "mse_1": float(err[0]),
        "mse_K": float(err[-1]),
        "latent_norm_max": float(rollout.latent.norm(dim=-1).max()),
    }


def halting(model, windows: dict) -> dict:
    cap = 32
    result = {
        "certified": [{"tol": t, **errors(model, windows, tol=t, max_iters=cap)} for t in TOLS],
        "fixed": [{"iters": k, **errors(model, windows, tol=0.0, max_iters=k)} for k in FIXED],
    }
    reference = result["fixed"][-1]  # the fixed maximum: 32 iterations
    within = [r for r in result["certified"] if r["mse_K"] <= 1.01 * reference["mse_K"]]
    if within:
        best = min(within, key=lambda r: r["iters_mean"])
        result["saving_at_1pct"] = {
            "tol": best["tol"],
            "iters_mean": best["iters_mean"],
            "fraction_saved": 1.0 - best["iters_mean"] / cap,
        }
    return result


def test_time(model, windows: dict) -> list[dict]:
    mean = model.config.train_iters_mean
    caps = sorted({1, 2, 4, *range(4, int(4 * mean) + 1, 4)})
    return [{"cap": k, **errors(model, windows, tol=model.config.tol, max_iters=k)} for k in caps]


@torch.no_grad()
def stability(model, start_obs: np.ndarray, steps: int, bounds: tuple, seed: int) -> dict:
    generator = torch.Generator().manual_seed(seed)
    low, high = (torch.as_tensor(b, dtype=torch.float32) for b in bounds)
    latent = model.encode(torch.as_tensor(start_obs))
    start_norm = float(latent.norm(dim=-1).max())
    worst = torch.zeros(latent.shape[0])
    broken = torch.zeros(latent.shape[0], dtype=torch.bool)
    started = time.perf_counter()
    with model.reuse_weights():
        for _ in range(steps):
            action = low + (high - low) * torch.rand(latent.shape[0], len(low), generator=generator)
            out = model.step(latent, action)
            latent = out.latent
            norm = latent.norm(dim=-1)
            broken |= ~torch.isfinite(norm)
            worst = torch.maximum(worst, torch.nan_to_num(norm, nan=0.0, posinf=0.0))
            latent = torch.nan_to_num(latent, nan=0.0, posinf=0.0, neginf=0.0)  # keep going
    record = {
        "latent_norm_max": float(worst.max()),
        "nan_or_inf_fraction": float(broken.float().mean()),
        "start_norm_max": start_norm,
        "seconds": round(time.perf_counter() - started, 1),
    }
    if model.looped and getattr(model, "certified", False):
        record["proven_bound"] = model.latent_bound(start_norm)
    return record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--fit-steps", type=int, default=2000)
    parser.add_argument("--rollout-steps", type=int, default=10_000)
    parser.add_argument("--starts", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = DATA
    if args.quick:
        data = Path("runs/bench/pendulum-quick")
        args.seeds, args.fit_steps, args.rollout_steps, args.starts = [0], 30, 50, 16
    if not (data / "meta.json").is_file():
        collect("InvertedPendulum-v5", 2_000 if args.quick else 20_000, data, progress=False)
    replay = Replay.load(data)
    report = {
        "command": "python " + " ".join(sys.argv),
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "machine": machine_info(),
        "data": {
            "path": str(data),
            "env_id": replay.meta.get("env_id"),
            "transitions": len(replay),
        },
        "fit_steps": args.fit_steps,
        "loopwm": {},
        "stability": {},
        "gate": {},
    }
    fit_config = dict(steps=args.fit_steps, eval_every=0, eval_horizon=10)
    for seed in args.seeds:
        for name in ("loopwm", "loopwm-gate", "mlp", "gru"):
            print(f"seed {seed}: fitting {name}", flush=True)
            model, _ = fit(
                replay, model=name, config=FitConfig(seed=seed, **fit_config), progress=False
            )
            _, heldout = replay.split(0.2, seed)
            windows = batch_to_tensors(heldout.eval_windows(10, 2048))
            if name == "loopwm":
                report["loopwm"][str(seed)] = {
                    "halting": halting(model, windows),
                    "test_time": test_time(model, windows),
                    "contraction_bound": model.contraction_bound(),
                }
            if name == "loopwm-gate":
                sweep = report["gate"].setdefault(str(seed), [])
                trained = model.config
                for threshold in GATE_THRESHOLDS:
                    model.config = trained.replace(gate_threshold=threshold)
                    record = errors(model, windows, tol=model.config.tol, max_iters=32)
                    sweep.append({"threshold": threshold, **record})
                model.config = trained  # stability runs at the trained threshold
            rng = np.random.default_rng(seed)
            starts = heldout.obs[rng.choice(len(heldout), args.starts, replace=False)]
            space = replay.meta["action_space"]
            bounds = (space["low"], space["high"])
            record = stability(model, starts, args.rollout_steps, bounds, seed)
            report["stability"].setdefault(name, {})[str(seed)] = record
            print(f"  stability {record}", flush=True)
            if not args.quick:
                write_json(RESULTS, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
