"""Does LoopWM spend more loop iterations on hard transitions? Measured on loopwm's
contact task, where the hard transitions are known: a contact reverses a velocity.

For every held-out transition of ``loopwm/BouncingBall-v0`` (random policy), the model
warm-starts at the encoded real state and halts by its certified rule; the iteration count
is compared with (a) whether MuJoCo reported a contact during the step, (b) the size of
the state change ``||o_{t+1} - o_t||`` (standardised), and (c) the model's own 1-step error.
Spearman correlations with average ranks for ties; 3 seeds of the model fit. Beside the
correlation with the 0/1 contact flag, the ROC AUC of iterations as a contact detector:
the chance that a contact step takes more iterations than a contact-free one (ties
count half; 0.5 is chance, 1 a perfect detector).

    python benchmarks/adaptive_compute.py            # writes results/adaptive_compute.json
    python benchmarks/adaptive_compute.py --quick    # smoke run, writes nothing
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from machine import machine_info

import loopwm.envs  # noqa: F401  (registers loopwm/BouncingBall-v0)
from loopwm.config import FitConfig
from loopwm.fit import fit
from loopwm.io import write_json
from loopwm.replay import Replay, ReplayWriter

RESULTS = Path(__file__).parent / "results" / "adaptive_compute.json"
ENV_ID = "loopwm/BouncingBall-v0"
TOLS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)  # halting tolerances swept (the default is 1e-3)


def collect_with_contacts(root: Path, steps: int, seed: int) -> tuple[Replay, np.ndarray]:
    """Random-policy transitions plus each step's MuJoCo contact flag (contacts.npy)."""
    if not (root / "contacts.npy").exists():
        env = gym.make(ENV_ID)
        env.action_space.seed(seed)
        obs, _ = env.reset(seed=seed)
        contacts = []
        with ReplayWriter(root, obs_dim=4, action_dim=2, meta={"env_id": ENV_ID}) as writer:
            for _ in range(steps):
                action = env.action_space.sample()
                next_obs, reward, terminated, truncated, info = env.step(action)
                writer.add(obs, action, reward, next_obs, terminated, truncated)
                contacts.append(info["contact"])
                obs = env.reset()[0] if terminated or truncated else next_obs
        np.save(root / "contacts.npy", np.asarray(contacts))
    return Replay.load(root), np.load(root / "contacts.npy")


def ranks(values: np.ndarray) -> np.ndarray:
    """Ranks with ties given their average rank (as Spearman's rho needs)."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    ranks = np.empty(len(values))
    boundaries = np.flatnonzero(np.diff(sorted_values)) + 1
    for start, end in zip(np.r_[0, boundaries], np.r_[boundaries, len(values)], strict=True):
        ranks[order[start:end]] = (start + end - 1) / 2.0
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(ranks(np.asarray(a, float)), ranks(np.asarray(b, float)))[0, 1])


def auc(score: np.ndarray, label: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counted half (ROC AUC)."""
    r = ranks(np.asarray(score, float)) + 1.0
    positives, negatives = int(label.sum()), int((~label).sum())
    return float((r[label].sum() - positives * (positives + 1) / 2) / (positives * negatives))


@torch.no_grad()
def measure(model, replay: Replay, contacts: np.ndarray) -> dict:
    model.eval()
    obs = torch.as_tensor(replay.obs)
    latent = model.encode(obs)
    out = model.step(latent, torch.as_tensor(replay.action))
    iters = out.iters.numpy()
    std = model.obs_std.numpy()
    change = np.linalg.norm((replay.next_obs - replay.obs) / std, axis=1)
    predicted = model.decode(out.latent).numpy()
    error = np.linalg.norm((predicted - replay.next_obs) / std, axis=1)
    return {
        "transitions": len(iters),
        "contact_fraction": float(contacts.mean()),
        "iters_mean_contact": float(iters[contacts].mean()),
        "iters_mean_free": float(iters[~contacts].mean()),
        "spearman_iters_contact": spearman(iters, contacts),
        "auc_iters_contact": auc(iters, contacts),
        "spearman_iters_state_change": spearman(iters, change),
        "spearman_iters_error": spearman(iters, error),
        "iters_histogram": {
            int(k): int(v) for k, v in zip(*np.unique(iters, return_counts=True), strict=True)
        },
        "by_tol": {str(t): by_tol(model, latent, replay, contacts, t) for t in TOLS},
        "_arrays": {"iters": iters, "contact": contacts, "change": change},
    }


@torch.no_grad()
def by_tol(model, latent: torch.Tensor, replay: Replay, contacts: np.ndarray, tol: float) -> dict:
    """Iterations against contacts when halting at ``tol`` (looser: fewer iterations)."""
    iters = model.step(latent, torch.as_tensor(replay.action), tol=tol).iters.numpy()
    return {
        "iters_mean": float(iters.mean()),
        "spearman_iters_contact": spearman(iters, contacts),
        "auc_iters_contact": auc(iters, contacts),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    train_steps, test_steps, fit_steps = (2000, 500, 20) if args.quick else (20_000, 5_000, 2000)
    suffix = "-quick" if args.quick else ""
    train, _ = collect_with_contacts(Path(f"runs/bench/ball-train{suffix}"), train_steps, 0)
    test, contacts = collect_with_contacts(Path(f"runs/bench/ball-test{suffix}"), test_steps, 1000)
    rows = []
    for seed in args.seeds:
        cfg = FitConfig(steps=fit_steps, eval_every=0, seed=seed)
        model, result = fit(
            train, preset="tiny" if args.quick else "default", config=cfg, progress=False
        )
        row = measure(model, test, contacts)
        row.update(
            seed=seed,
            contraction_bound=result["contraction_bound"],
            heldout_obs_mse_1=result["heldout"]["obs_mse_1"],
        )
        rows.append(row)
        print(
            f"seed {seed}: iters contact {row['iters_mean_contact']:.2f} vs free "
            f"{row['iters_mean_free']:.2f}; spearman contact {row['spearman_iters_contact']:.3f} "
            f"(AUC {row['auc_iters_contact']:.3f}), "
            f"state change {row['spearman_iters_state_change']:.3f}, "
            f"error {row['spearman_iters_error']:.3f}",
            flush=True,
        )
    keys = (
        "iters_mean_contact",
        "iters_mean_free",
        "spearman_iters_contact",
        "auc_iters_contact",
        "spearman_iters_state_change",
        "spearman_iters_error",
    )
    summary = {
        k: {
            "mean": float(np.mean([r[k] for r in rows])),
            "std": float(np.std([r[k] for r in rows])),
        }
        for k in keys
    }
    if not args.quick:
        _plot(rows[0]["_arrays"], RESULTS.with_suffix(".png"))
    for r in rows:
        r.pop("_arrays")
    report = {
        "command": "python " + " ".join(sys.argv),
        "env_id": ENV_ID,
        "train_transitions": len(train),
        "test_transitions": len(test),
        "target": "Spearman(iterations, contact) >= 0.6",
        "summary": summary,
        "runs": rows,
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "machine": machine_info(),
        "date": time.strftime("%Y-%m-%d"),
    }
    print(json.dumps(summary, indent=1))
    if not args.quick:
        write_json(RESULTS, report)
        print(f"wrote {RESULTS}")
    return 0


def _plot(arrays: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    iters, contact, change = arrays["iters"], arrays["contact"], arrays["change"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    values = np.unique(iters)
    width = 0.4
    for offset, mask, label in (
        (-width / 2, ~contact, "no contact"),
        (width / 2, contact, "contact"),
    ):
        counts = np.array([(iters[mask] == v).mean() for v in values])
        left.bar(values + offset, counts, width=width, label=label)
    left.set_xlabel("loop iterations")
    left.set_ylabel("fraction of transitions")
    left.legend()
    right.scatter(
        change,
        iters + np.random.default_rng(0).uniform(-0.2, 0.2, len(iters)),
        s=3,
        c=np.where(contact, "tab:red", "tab:blue"),
        alpha=0.4,
    )
    right.set_xlabel("state change ||o' - o|| (standardised)")
    right.set_ylabel("loop iterations (jittered)")
    fig.suptitle("BouncingBall: iterations vs difficulty (seed 0)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
