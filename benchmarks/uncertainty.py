"""Does the world model know where it does not know? Ensemble disagreement, the loop's own
signals, their cost, and SAC trained only in the dream with and without them.

Three parts, each seed side by side:

- **calibration**: on InvertedPendulum-v5, HalfCheetah-v5 and loopwm/BouncingBall-v0
  (the contact task), 20,000 random-policy transitions; a 5-member LoopWM ensemble and a
  single LoopWM are fitted (``loopwm fit``'s defaults; the ``default`` preset on
  InvertedPendulum, as the README's model, ``small`` on the others). On held-out episodes:
  Spearman of each per-sample signal against the actual 1-step error (the ensemble's
  disagreement ``u``, the same disagreement measured in latent space, the loop's last
  residual and its iteration count), and the error per decile of ``u`` (the calibration
  plot).
- **cost**: ms per imagined step (``model.step`` on B latents, no gradients) of the
  5-member ensemble against one model, and against 5 single models stepped one after
  another, at B = 256 and 1024, ``small`` and ``default``.
- **dream**: SAC (stable-baselines3 defaults) trained for 10,000 steps only inside the
  InvertedPendulum models (``loopwm dream``), then scored over 10 episodes in the dream it
  trained in, in the same model without penalty or limit, and on the real env. Variants:
  the single model; the ensemble; the ensemble with the reward penalty ``r - λ·u``; the
  ensemble with truncation where ``u`` exceeds a limit; MBPO's and MOPO's recipe, the
  ensemble with 10-step training episodes that start at the fitted data's own states
  (``branched``), with and without the penalty; episodes ended with probability
  ``1 - cont`` rather than below 0.5 (``sample``); MOReL's HALT, episodes *terminated*
  where ``u`` exceeds the limit (``halt``); one random member's dynamics per step (PETS'
  and MBPO's trajectory sampling, ``random``), and both (``random_halt``). Each records
  the model along the agent's real episodes (``honesty``: its 1-step error there, its
  continuation at the real terminations, the observations' reach and ``u`` there and in
  the dream).

    python benchmarks/uncertainty.py             # 3 seeds, about 80 minutes on 2 cores
    python benchmarks/uncertainty.py --seeds 0   # one seed
    python benchmarks/uncertainty.py --envs InvertedPendulum-v5 \
        --dream-variants ensemble penalty limit   # SAC in the ensemble dreams only
    python benchmarks/uncertainty.py --quick     # smoke run, writes nothing
    python benchmarks/uncertainty.py --cost-only # re-measure the cost part alone
    python benchmarks/uncertainty.py --dream-only --dream-variants branched \
        branched_penalty --threads 1          # more variants on the models fitted before
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from machine import provenance

import loopwm.envs  # noqa: F401  (registers loopwm/BouncingBall-v0)
from loopwm.agents import train_in_dream
from loopwm.collect import collect
from loopwm.config import FitConfig
from loopwm.fit import fit
from loopwm.models import build_model, model_config
from loopwm.replay import Replay
from loopwm.training import spearman

RESULTS = Path(__file__).parent / "results" / "uncertainty.json"
RUNS = Path("runs/bench/uncertainty")
ENVS = {
    "InvertedPendulum-v5": "default",
    "HalfCheetah-v5": "small",
    "loopwm/BouncingBall-v0": "small",
}
DREAM_ENV = "InvertedPendulum-v5"
MEMBERS = 5
DATA_STEPS = 20_000
DREAM_STEPS = 10_000
EVAL_EPISODES = 10
WINDOWS = 4096  # held-out 1-step windows scored per model
DREAM_VARIANTS = (
    "single",
    "ensemble",
    "penalty",
    "limit",
    "branched",
    "branched_penalty",
    "sample",
    "halt",
    "random",
    "random_halt",
)
BRANCH_STEPS = 10  # imagined steps per training episode of the branched variants


def data_folder(env_id: str, seed: int) -> Path:
    """Where the random-policy transitions of ``env_id`` for ``seed`` are collected."""
    return RUNS / f"data/{env_id.replace('/', '_')}-{seed}"


@torch.no_grad()
def signals(model, heldout: Replay) -> dict[str, np.ndarray]:
    """Per held-out transition: the actual 1-step error (standardised MSE) and each signal."""
    model.eval()
    windows = heldout.eval_windows(1, WINDOWS)
    obs = torch.as_tensor(windows["obs0"], dtype=torch.float32)
    action = torch.as_tensor(windows["action"][:, 0], dtype=torch.float32)
    target = model.standardize(torch.as_tensor(windows["next_obs"][:, 0], dtype=torch.float32))
    out = model.step(model.encode(obs), action)
    error = (model.decode(out.latent, standardized=True) - target).pow(2).mean(-1)
    found = {"error": error, "residual": out.residual, "iters": out.iters.float()}
    if out.members is not None:
        found["uncertainty"] = out.uncertainty
        found["latent_disagreement"] = out.members.std(0, correction=0).pow(2).mean(-1).sqrt()
    return {k: v.numpy().astype(np.float64) for k, v in found.items()}


def deciles(u: np.ndarray, error: np.ndarray) -> list[dict]:
    """Mean ``u`` and mean actual error in each decile of ``u`` (the calibration curve)."""
    edges = np.quantile(u, np.linspace(0, 1, 11))
    index = np.clip(np.searchsorted(edges, u, side="right") - 1, 0, 9)
    return [
        {"u_mean": float(u[index == b].mean()), "error_mean": float(error[index == b].mean())}
        for b in range(10)
        if (index == b).any()
    ]


def calibration(env_id: str, preset: str, seed: int, fit_cfg: FitConfig) -> dict:
    data = data_folder(env_id, seed)
    shutil.rmtree(data, ignore_errors=True)
    collect(env_id, DATA_STEPS, data, seed=seed, progress=False)
    replay = Replay.load(data)
    _, heldout = replay.split(fit_cfg.holdout_fraction, fit_cfg.seed)
    record = {"preset": preset}
    for name, members in (("ensemble", MEMBERS), ("single", 1)):
        out = RUNS / f"fit/{env_id.replace('/', '_')}-{seed}-{name}"
        started = time.perf_counter()
        model, metrics = fit(
            replay,
            preset=preset,
            model_overrides={"ensemble": members},
            config=fit_cfg,
            out=out,
            progress=False,
            force=True,
        )
        found = signals(model, heldout)
        error = found.pop("error")
        record[name] = {
            "fit_seconds": time.perf_counter() - started,
            "parameters": model.num_parameters(),
            "obs_mse_1": float(error.mean()),
            "obs_mse_K": metrics["heldout"]["obs_mse_K"],
            "spearman_1": {k: spearman(v, error) for k, v in found.items()},
            "checkpoint": str(out / "model.safetensors"),
        }
        if members > 1:
            record[name]["deciles"] = deciles(found["uncertainty"], error)
            record[name]["uncertainty_mean"] = float(found["uncertainty"].mean())
        print(
            f"{env_id} seed {seed} {name}: 1-step MSE {error.mean():.4f}, Spearman with error "
            + ", ".join(f"{k} {v:.2f}" for k, v in record[name]["spearman_1"].items()),
            flush=True,
        )
    return record


@torch.no_grad()
def cost(batches: list[int], repeats: int) -> list[dict]:
    """ms per imagined step of an ensemble against one model, side by side."""
    rows = []
    for preset in ("small", "default"):
        for batch in batches:
            times, models = {}, {}
            for members in (1, MEMBERS):
                torch.manual_seed(0)
                config = model_config(
                    "loopwm", preset, obs_dim=17, action_dim=6, overrides={"ensemble": members}
                )
                models[members] = build_model("loopwm", config).eval()
            latent = models[1].encode(torch.randn(batch, 17))
            action = torch.rand(batch, 6) * 2 - 1
            runs = {  # the models each timed call steps, one after another
                1: [models[1]],
                MEMBERS: [models[MEMBERS]],
                "sequential": [models[1]] * MEMBERS,  # K single models in turn
            }
            for key, stepped in runs.items():
                for _ in range(3):  # warm-up
                    for model in stepped:
                        model.step(latent, action)
                best = []
                for _ in range(repeats):
                    started = time.perf_counter()
                    for _ in range(10):
                        for model in stepped:
                            model.step(latent, action)
                    best.append((time.perf_counter() - started) / 10 * 1e3)
                times[key] = float(np.median(best))
            rows.append(
                {
                    "preset": preset,
                    "batch": batch,
                    "ms_single": times[1],
                    "ms_ensemble": times[MEMBERS],
                    "ms_sequential": times["sequential"],
                    "ratio": times[MEMBERS] / times[1],
                    "ratio_sequential": times["sequential"] / times[1],
                }
            )
            print(f"cost {preset} B={batch}: {rows[-1]['ratio']:.2f}x one model", flush=True)
    return rows


def dream(
    checkpoints: dict[str, str], seed: int, penalty: float, limit: float, names=DREAM_VARIANTS
) -> dict:
    # branched: MBPO's and MOPO's short rollouts from the fitted data's own states
    branched = {"start_states": str(data_folder(DREAM_ENV, seed)), "episode_steps": BRANCH_STEPS}
    variants = {
        "single": (checkpoints["single"], {}),
        "ensemble": (checkpoints["ensemble"], {}),
        "penalty": (checkpoints["ensemble"], {"uncertainty_penalty": penalty}),
        "limit": (checkpoints["ensemble"], {"uncertainty_limit": limit}),
        "branched": (checkpoints["ensemble"], branched),
        "branched_penalty": (checkpoints["ensemble"], {**branched, "uncertainty_penalty": penalty}),
        "sample": (checkpoints["ensemble"], {"termination": "sample"}),
        "halt": (checkpoints["ensemble"], {"uncertainty_halt": limit}),
        "random": (checkpoints["ensemble"], {"ensemble_step": "random"}),
        "random_halt": (
            checkpoints["ensemble"],
            {"ensemble_step": "random", "uncertainty_halt": limit},
        ),
    }
    record = {}
    for name in names:
        checkpoint, options = variants[name]
        started = time.perf_counter()
        result = train_in_dream(
            checkpoint,
            "sac",
            DREAM_STEPS,
            eval_episodes=EVAL_EPISODES,
            seed=seed,
            progress=False,
            **options,
        )
        record[name] = {
            "options": options,
            "dream_return": result["dream_return"],
            "dream_return_raw": result["dream_return_raw"],
            "real_return": result["real_return"],
            "honesty": result["honesty"],
            "wall_seconds": time.perf_counter() - started,
        }
        print(
            f"dream seed {seed} {name}: dream {result['dream_return'][0]:.1f}, raw dream "
            f"{result['dream_return_raw'][0]:.1f}, real {result['real_return'][0]:.1f}",
            flush=True,
        )
    return record


def main() -> int:
    global DATA_STEPS, DREAM_STEPS, EVAL_EPISODES, WINDOWS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    # λ·u at the u of a policy that exploits the model (about 8x the held-out mean) is half
    # the env's reward of 1 per step; the limit is about 3x the held-out mean u
    parser.add_argument("--penalty", type=float, default=20.0, help="λ of the penalty variant")
    parser.add_argument("--limit", type=float, default=0.01, help="u limit of the limit variant")
    parser.add_argument(
        "--envs", nargs="+", default=list(ENVS), choices=list(ENVS), help="calibration envs"
    )
    parser.add_argument(
        "--dream-variants",
        nargs="+",
        default=list(DREAM_VARIANTS),
        choices=DREAM_VARIANTS,
        help="SAC-in-the-dream variants (needs InvertedPendulum-v5 among --envs)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--cost-only",
        action="store_true",
        help="re-measure only the cost part, replacing it in an existing --out JSON",
    )
    parser.add_argument(
        "--dream-only",
        action="store_true",
        help="run only --dream-variants on the models an earlier run of --out fitted (their "
        "checkpoints and data still under runs/bench/uncertainty), adding to its dream part",
    )
    parser.add_argument("--quick", action="store_true", help="tiny budgets, writes nothing")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    fit_cfg = FitConfig()
    batches, repeats = [256, 1024], 5
    if args.quick:
        args.seeds = args.seeds[:1]
        DATA_STEPS, DREAM_STEPS, EVAL_EPISODES, WINDOWS = 1_500, 300, 2, 256
        fit_cfg = FitConfig(steps=30, batch_size=16, eval_every=0)
        ENVS.update({env_id: "tiny" for env_id in ENVS})
        batches, repeats = [256], 1
    if args.dream_only:
        results = json.loads(args.out.read_text())
        results.setdefault("dream_commands", []).append(provenance()["command"])
        for seed in args.seeds:
            checkpoints = {
                name: results["calibration"][DREAM_ENV][str(seed)][name]["checkpoint"]
                for name in ("single", "ensemble")
            }
            record = dream(
                checkpoints, seed, results["penalty"], results["limit"], args.dream_variants
            )
            results["dream"].setdefault(str(seed), {}).update(record)
            if not args.quick:
                args.out.write_text(json.dumps(results, indent=2))
        return 0
    if args.cost_only:
        results = json.loads(args.out.read_text())
        results["cost"] = cost(batches, repeats)
        results["cost_command"] = provenance()["command"]
        if not args.quick:
            args.out.write_text(json.dumps(results, indent=2))
        return 0
    results = {
        **provenance(),
        "members": MEMBERS,
        "data_steps": DATA_STEPS,
        "dream_steps": DREAM_STEPS,
        "eval_episodes": EVAL_EPISODES,
        "penalty": args.penalty,
        "limit": args.limit,
        "fit": dataclasses.asdict(fit_cfg),
        "cost": cost(batches, repeats),
        "calibration": {},
        "dream": {},
    }

    def save() -> None:
        if not args.quick:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=2))

    save()
    for seed in args.seeds:
        for env_id in args.envs:
            record = calibration(env_id, ENVS[env_id], seed, fit_cfg)
            results["calibration"].setdefault(env_id, {})[str(seed)] = record
            save()
        if DREAM_ENV not in args.envs:
            continue
        checkpoints = {
            name: results["calibration"][DREAM_ENV][str(seed)][name]["checkpoint"]
            for name in ("single", "ensemble")
        }
        results["dream"][str(seed)] = dream(
            checkpoints, seed, args.penalty, args.limit, args.dream_variants
        )
        save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
