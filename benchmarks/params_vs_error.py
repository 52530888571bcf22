"""Parameters vs held-out error: does looping one block beat stacking parameters?

On HalfCheetah-v5 and Hopper-v5, every model family is fitted at a range of widths and
scored on held-out episodes (1-step and 50-step open-loop error, standardised units):

- ``loopwm``: one certified block, looped until it converges;
- ``mlp``: an untied stack of the same block, 8 deep (about LoopWM's iterations per
  step; the measured means are in the results), at the same width (8x the block
  parameters);
- ``mlp-matched``: the same 8-deep untied stack, narrowed until its total parameter count
  matches LoopWM's at that width;
- ``gru``: a GRU cell transition;
- ``loopwm-gate``: the LoopWM paper's variant (unconstrained block, learned halting gate).

Width ``w`` sets ``latent_dim = inject_dim = w`` and ``block_hidden = hidden_dim = 2w``, so
the encoder, decoder and heads grow with the transition. The parameter ratio at matched
error is read off the curves: the parameters an untied family needs to reach LoopWM's
50-step error at each width (log-linear interpolation between measured widths), divided
by LoopWM's (log-log interpolation between measured widths). FLOPs per transition are
counted (matmuls only, ``torch.utils.flop_counter``) on the held-out rollouts, with the
iterations the loop really ran: prelude, loop, decoder and heads, plus the encoder's one
call per window spread over its steps.

Data per env (``loopwm collect``, cached in ``runs/bench/``): 10k random transitions plus
10k from an SB3 SAC policy trained for 10k steps (sampling noise on), so states go beyond
what random actions reach; episodes are cut at 200 steps, so HalfCheetah (which never
terminates) gives 100 episodes rather than 20. Held-out episodes, not held-out
transitions: 20% of them, drawn per seed. Errors are scored on the held-out windows of
``--horizon`` steps that lie inside one episode; Hopper's random episodes rarely last
that long (it falls), so its scored windows come mostly from the SAC episodes (the
report counts them per source).

    python benchmarks/params_vs_error.py              # 3 seeds, writes results/params_vs_error.json
    python benchmarks/params_vs_error.py --quick      # smoke run, writes nothing
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import machine_info, run_side_by_side
from torch.utils.flop_counter import FlopCounterMode

from loopwm.collect import collect
from loopwm.config import FitConfig
from loopwm.fit import fit
from loopwm.io import atomic_write, write_json
from loopwm.models import build_model, model_config
from loopwm.replay import Replay
from loopwm.training import EVAL_WINDOWS, batch_to_tensors

RESULTS = Path(__file__).parent / "results" / "params_vs_error.json"
ENVS = ("HalfCheetah-v5", "Hopper-v5")
FAMILIES = ("loopwm", "mlp", "mlp-matched", "gru", "loopwm-gate")
SHARED = ("encoder", "decoder", "reward_head", "cont_head", "prelude")  # outside the transition
EPISODE_STEPS = 200


def width_overrides(width: int) -> dict:
    return {
        "latent_dim": width,
        "inject_dim": width,
        "block_hidden": 2 * width,
        "hidden_dim": 2 * width,
    }


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """``(total, transition)``: all parameters, and those of the transition itself."""
    total = core = 0
    for name, p in model.named_parameters():
        total += p.numel()
        if name.split(".")[0] not in SHARED:
            core += p.numel()
    return total, core


def family_model(family: str, width: int, obs_dim: int, action_dim: int) -> tuple[str, dict]:
    """The registry name and config overrides of ``family`` at ``width``."""
    if family != "mlp-matched":
        return family, width_overrides(width)
    target = count_parameters(_build("loopwm", width_overrides(width), obs_dim, action_dim))[0]
    best = None
    for w in range(2, width + 1):  # the narrowest 8-deep stack at LoopWM's parameter count
        total = count_parameters(_build("mlp", width_overrides(w), obs_dim, action_dim))[0]
        if best is None or abs(total - target) < abs(best[1] - target):
            best = (w, total)
    return "mlp", width_overrides(best[0])


def fit_row(replay: Replay, family: str, width: int, seed: int, args, windows=None) -> dict:
    """Fit ``family`` at ``width`` for ``args.fit_steps`` steps; its held-out errors,
    parameters and fit time (and FLOPs per transition on ``windows``, if given)."""
    name, overrides = family_model(family, width, replay.obs_dim, replay.action_dim)
    cfg = FitConfig(steps=args.fit_steps, eval_every=0, eval_horizon=args.horizon, seed=seed)
    model, result = fit(replay, model=name, model_overrides=overrides, config=cfg, progress=False)
    held = result["heldout"]
    total, core = count_parameters(model)
    return {
        "family": family,
        "width": width,
        "fit_width": overrides["latent_dim"],
        "seed": seed,
        "parameters": total,
        "transition_parameters": core,
        "mse_1": held["obs_mse_1"],
        "mse_K": held["obs_mse_K"],
        "copy_mse_K": held["copy_mse_K"],
        "iters_mean": held["iters_mean"],
        "flops_per_transition": flops_per_transition(model, windows) if windows else None,
        "train_seconds": result["train_seconds"],
    }


def _build(name: str, overrides: dict, obs_dim: int, action_dim: int):
    cfg = model_config(name, "default", obs_dim=obs_dim, action_dim=action_dim, overrides=overrides)
    return build_model(name, cfg)


def merge(first: Replay, second: Replay, policy: str) -> Replay:
    """Both datasets as one, episode ids of ``second`` moved past ``first``'s."""
    arrays = {}
    for key in ("obs", "action", "reward", "next_obs", "terminated", "truncated"):
        arrays[key] = np.concatenate([getattr(first, key), getattr(second, key)])
    offset = int(first.episode.max()) + 1
    arrays["episode"] = np.concatenate([first.episode, second.episode + offset])
    return Replay(**arrays, meta={**first.meta, "policy": policy})


def dataset(env_id: str, transitions: int, sac_steps: int, root: Path) -> tuple[Replay, dict]:
    """Random plus SAC-policy transitions of ``env_id`` (collected once, then cached)."""
    from stable_baselines3 import SAC

    from loopwm.agents import load_sb3_policy
    from loopwm.envs import make_env

    slug = f"{env_id.split('-')[0].lower()}-{transitions}-ep{EPISODE_STEPS}"
    cut = {"max_episode_steps": EPISODE_STEPS}
    random_dir, policy_dir = root / f"{slug}-random", root / f"{slug}-sac{sac_steps}"
    policy_zip = root / f"{env_id.split('-')[0].lower()}-sac{sac_steps}.zip"
    if not (random_dir / "meta.json").is_file():
        collect(env_id, transitions, random_dir, seed=0, progress=False, env_kwargs=cut)
    if not policy_zip.is_file():
        env = make_env(env_id)
        agent = SAC(
            "MlpPolicy", env, seed=0, device="cpu", learning_starts=min(1000, sac_steps // 2)
        )
        agent.learn(sac_steps)
        atomic_write(policy_zip, lambda tmp: agent.save(tmp))  # a killed run leaves no zip
        env.close()
    if not (policy_dir / "meta.json").is_file():
        env = make_env(env_id)
        # samples: diverse, still competent; trusted: this benchmark wrote the file itself
        policy = load_sb3_policy(policy_zip, "sac", env, trusted=True)
        env.close()
        collect(
            env_id,
            transitions,
            policy_dir,
            policy=policy,
            policy_name=f"sb3-sac:{policy_zip.name}",
            seed=1,
            progress=False,
            env_kwargs=cut,
        )
    first, second = Replay.load(random_dir), Replay.load(policy_dir)
    for folder, data in ((random_dir, first), (policy_dir, second)):
        if len(data) != transitions:  # the writer flushes as it goes: a killed run is partial
            raise RuntimeError(
                f"{folder} holds {len(data)} transitions, not {transitions} (an interrupted "
                "collection?); delete the folder and run again"
            )
    info = {
        "env_id": env_id,
        "random_transitions": len(first),
        "policy_transitions": len(second),
        "policy": f"SB3 SAC (default hyperparameters, seed 0) after {sac_steps} steps, sampling",
        "policy_return_per_episode": float(second.reward.sum() / max(1, second.num_episodes)),
        "episodes": first.num_episodes + second.num_episodes,
        "episode_steps_max": EPISODE_STEPS,
    }
    merged = merge(first, second, f"random+sb3-sac{sac_steps}")
    info["random_episode_ids"] = [0, int(first.episode.max())]
    return merged, info


@torch.no_grad()
def flops_per_transition(model, windows: dict) -> float:
    """Matmul FLOPs of one imagined transition (prelude, loop, decoder and heads)."""
    model.eval()
    with FlopCounterMode(display=False) as counter:
        latent = model.encode(windows["obs0"])
        rollout = model.imagine(latent, windows["action"])
        model.decode(rollout.latent.flatten(0, 1), standardized=True)
    batch, horizon = windows["action"].shape[:2]
    return counter.get_total_flops() / (batch * horizon)


def matched_ratio(target: float, loop_params: int, curve: list[tuple[float, float]]) -> dict:
    """Parameters a family needs for error ``target`` (first crossing of its curve, log-linear
    between measured sizes), over ``loop_params``. Outside the measured range the ratio is
    a bound: ``at most`` (already better at its smallest size) or ``at least`` (never
    reaches the target)."""
    curve = sorted((p, e if math.isfinite(e) else math.inf) for p, e in curve)
    if curve[0][1] <= target:
        return {"ratio": curve[0][0] / loop_params, "kind": "at most"}
    for (p0, e0), (p1, e1) in itertools.pairwise(curve):
        if e1 <= target:
            if not math.isfinite(e0):
                return {"ratio": p1 / loop_params, "kind": "at most"}
            frac = (math.log(e0) - math.log(target)) / (math.log(e0) - math.log(e1))
            params = math.exp(math.log(p0) + frac * (math.log(p1) - math.log(p0)))
            return {"ratio": params / loop_params, "kind": "interpolated"}
    return {"ratio": curve[-1][0] / loop_params, "kind": "at least"}


def summarise(rows: list[dict], widths: list[int]) -> dict:
    """Per family and width: parameters, FLOPs and mean/std of errors over seeds; then the
    parameter ratios at LoopWM's 50-step error."""
    table: dict[str, list[dict]] = {}
    for family in FAMILIES:
        for width in widths:
            group = [r for r in rows if r["family"] == family and r["width"] == width]
            if not group:
                continue
            entry = {
                k: group[0][k]
                for k in ("width", "fit_width", "parameters", "transition_parameters")
            }
            for key in ("mse_1", "mse_K", "iters_mean", "flops_per_transition", "train_seconds"):
                if group[0][key] is None:  # not measured
                    continue
                values = np.array([r[key] for r in group], dtype=float)
                entry[key] = {"mean": float(values.mean()), "std": float(values.std())}
            entry["seeds"] = len(group)
            table.setdefault(family, []).append(entry)
    ratios = {}
    for family in ("mlp", "mlp-matched", "gru", "loopwm-gate"):
        if family not in table:
            continue
        for scope, key in (("total", "parameters"), ("transition", "transition_parameters")):
            curve = [(e[key], e["mse_K"]["mean"]) for e in table[family]]
            ratios.setdefault(family, {})[scope] = [
                {
                    "width": e["width"],
                    "loopwm_mse_K": e["mse_K"]["mean"],
                    **matched_ratio(e["mse_K"]["mean"], e[key], curve),
                }
                for e in table.get("loopwm", [])
            ]
    return {"table": table, "ratio_at_matched_mse_K": ratios}


def run_in_parallel(args: argparse.Namespace) -> int:
    """One process per env (``args.jobs`` at a time, one thread each); one merged report."""
    envs = list(dict.fromkeys(args.envs))
    shared = [
        *("--widths", *map(str, args.widths)),
        *("--families", *args.families),
        *("--seeds", *map(str, args.seeds)),
        *("--fit-steps", str(args.fit_steps), "--horizon", str(args.horizon)),
        *("--transitions", str(args.transitions), "--sac-steps", str(args.sac_steps)),
        *("--threads", "1", "--jobs", "1"),
        *(["--quick"] if args.quick else []),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        outs = {env_id: Path(tmp) / f"{i}.json" for i, env_id in enumerate(envs)}
        commands = [
            [sys.executable, __file__, "--envs", env_id, *shared, "--out", str(outs[env_id])]
            for env_id in envs
        ]
        code = run_side_by_side(commands, args.jobs)
        if code:
            return code
        if args.quick:
            return 0
        reports = [json.loads(outs[env_id].read_text()) for env_id in envs]
    merged = {**reports[0], "command": "python " + " ".join(sys.argv)}
    merged["machine"]["envs_side_by_side"] = min(args.jobs, len(envs))
    merged["envs"] = {k: v for report in reports for k, v in report["envs"].items()}
    write_json(args.out, merged)
    print(f"wrote {args.out}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=list(ENVS))
    parser.add_argument("--widths", nargs="+", type=int, default=[16, 32, 64, 128])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--fit-steps", type=int, default=1000)
    parser.add_argument("--horizon", type=int, default=50, help="K of the K-step error")
    parser.add_argument("--transitions", type=int, default=10_000, help="per policy")
    parser.add_argument("--sac-steps", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--jobs", type=int, default=1, help="envs measured side by side, one process each"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--quick", action="store_true", help="smoke run, writes nothing")
    args = parser.parse_args()
    if args.quick:
        args.widths, args.seeds, args.fit_steps, args.horizon = [8, 16], [0], 10, 5
        args.transitions, args.sac_steps = 1000, 200
    if args.jobs > 1 and len(args.envs) > 1:
        return run_in_parallel(args)
    torch.set_num_threads(args.threads)
    root = Path("runs/bench")
    report = {
        "command": "python " + " ".join(sys.argv),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
        },
        "machine": machine_info(),
        "date": time.strftime("%Y-%m-%d"),
        "fit": {
            "steps": args.fit_steps,
            "batch_size": FitConfig().batch_size,
            "train_horizon": FitConfig().horizon,
            "eval_horizon": args.horizon,
            "units": "MSE per observation dimension, standardised by training-set std",
            "flops": "matmul FLOPs per imagined transition (prelude + loop + decoder + heads)",
        },
        "widths": args.widths,
        "seeds": args.seeds,
        "envs": {},
    }
    for env_id in args.envs:
        replay, info = dataset(env_id, args.transitions, args.sac_steps, root)
        print(f"{env_id}: {len(replay)} transitions, {info}", flush=True)
        rows = []
        for seed in args.seeds:
            _, heldout = replay.split(FitConfig().holdout_fraction, seed)
            windows = batch_to_tensors(heldout.eval_windows(args.horizon, EVAL_WINDOWS))
            # Which source the scorable windows come from (the scored ones are a uniform
            # subsample of these).
            eligible = np.flatnonzero(
                np.arange(len(heldout)) + args.horizon - 1 <= heldout.episode_end
            )
            from_random = float(np.mean(heldout.episode[eligible] <= info["random_episode_ids"][1]))
            info.setdefault("scored_windows", {})[str(seed)] = {
                "windows": int(windows["obs0"].shape[0]),
                "eligible": len(eligible),
                "fraction_from_random_episodes": from_random,
            }
            for width in args.widths:
                for family in args.families:
                    row = fit_row(replay, family, width, seed, args, windows)
                    rows.append(row)
                    print(
                        f"{env_id} seed {seed} w{width:<4d}{family:12s} "
                        f"params {row['parameters']:>9,d} "
                        f"1-step {row['mse_1']:.4f} {args.horizon}-step {row['mse_K']:.4f} "
                        f"iters {row['iters_mean']:.1f} "
                        f"MFLOP {row['flops_per_transition'] / 1e6:.3f} "
                        f"({row['train_seconds']:.0f}s)",
                        flush=True,
                    )
            report["envs"][env_id] = {"data": info, "runs": rows, **summarise(rows, args.widths)}
            if not args.quick:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                write_json(args.out, report)
    if args.quick:
        for env_id, part in report["envs"].items():
            print(env_id, json.dumps(part["ratio_at_matched_mse_K"])[:600])
    else:
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
