"""Where looping pays: a regime map for LoopWM against unlooped transitions.

Each part tests one hypothesis about where re-applying one certified block beats stacking
parameters or a GRU, on random-policy data of HalfCheetah-v5 and loopwm's contact task
(``loopwm/BouncingBall-v0``), 3 seeds, held-out episodes; errors are the 50-step open-loop
MSE per observation dimension in standardised units.

- ``depth``: action repeat (frame skip) 1, 4, 8, 16: one transition spans that many env
  steps. At each repeat, ``params_vs_error.py``'s families are fitted at each width and the
  parameters an untied stack needs to match LoopWM's 50-step error are read off its curve
  (the same interpolation); beside it, LoopWM's error against the GRU's at equal width
  (about equal parameters). Prediction: the ratio grows with the repeat.
- ``contraction``: the certified contraction factor ``c_max`` (0.5, 0.9, 0.97, 0.99) and
  the decay bound ``a_max``, each trained with the phantom gradient at the fixed point and
  with recurrent-depth training (``grad_mode="truncated"``: a sampled iteration count,
  gradients through its last iterations). For each model: the 50-step error against the
  test-time iteration cap, the iterations it runs, and the gap between the best cap and
  the certified fixed point.
- ``warmstart``: where the loop starts. The certified fixed point does not depend on the
  start, only the iterations spent reaching it: ``latent`` starts at ``h_t``, ``linear``
  at the fixed point of the block's linear part (``LoopWMConfig.warm_start``). Spearman and
  ROC AUC of iterations against MuJoCo contacts, at equal mean iterations (a tolerance
  sweep per start).

Datasets (``loopwm collect --action-repeat N``; cached in ``runs/bench/regimes/``): 20k
random transitions per env and repeat, episodes cut at 200 transitions.

    python benchmarks/regimes.py depth --jobs 2   # writes results/regimes_depth.json
    python benchmarks/regimes.py contraction      # writes results/regimes_contraction.json
    python benchmarks/regimes.py warmstart        # writes results/regimes_warmstart.json
    python benchmarks/regimes.py depth --quick    # smoke run, writes nothing
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from loop_behaviour import errors
from machine import provenance, run_side_by_side
from params_vs_error import fit_row, summarise, width_overrides

import loopwm.envs  # noqa: F401  (registers loopwm/BouncingBall-v0)
from loopwm.collect import collect
from loopwm.config import FitConfig
from loopwm.fit import fit
from loopwm.io import write_json
from loopwm.looped import LoopWM
from loopwm.replay import Replay
from loopwm.training import EVAL_WINDOWS, batch_to_tensors

RESULTS = Path(__file__).parent / "results"
ROOT = Path("runs/bench/regimes")
ENVS = ("HalfCheetah-v5", "loopwm/BouncingBall-v0")
EPISODE_STEPS = 200  # transitions per episode, whatever the repeat
DEPTH_FAMILIES = ("loopwm", "mlp", "mlp-matched", "gru", "loopwm-gate")


def dataset(env_id: str, repeat: int, transitions: int) -> Replay:
    """Random-policy transitions of ``env_id`` at action repeat ``repeat`` (cached)."""
    slug = f"{env_id.split('/')[-1].split('-')[0].lower()}-r{repeat}-{transitions}"
    folder = ROOT / slug
    if not (folder / "meta.json").is_file():
        cut = {"max_episode_steps": EPISODE_STEPS * repeat}  # the inner env counts sub-steps
        collect(env_id, transitions, folder, action_repeat=repeat, env_kwargs=cut, progress=False)
    replay = Replay.load(folder)
    if len(replay) != transitions:  # the writer flushes as it goes: a killed run is partial
        raise RuntimeError(f"{folder} holds {len(replay)} transitions, not {transitions}")
    return replay


def rank_or_zero(value: float) -> float:
    return value if math.isfinite(value) else 0.0


def at_iters(sweep: list[dict], target: float) -> dict:
    """The sweep's rank figures at mean iterations ``target``: linear between the two
    tolerances whose means bracket it (the nearest one outside the swept range)."""
    points = sorted(sweep, key=lambda r: r["iters_mean"])
    keys = ("spearman_iters_contact", "auc_iters_contact")
    for low, high in zip(points, points[1:], strict=False):
        if low["iters_mean"] <= target <= high["iters_mean"]:
            span = high["iters_mean"] - low["iters_mean"]
            w = (target - low["iters_mean"]) / span if span else 0.0
            out = {k: (1 - w) * low[k] + w * high[k] for k in keys}
            return out | {"iters_mean": target, "tols": [low["tol"], high["tol"]]}
    near = min(points, key=lambda r: abs(r["iters_mean"] - target))
    return {k: near[k] for k in keys} | {"iters_mean": near["iters_mean"], "tols": [near["tol"]]}


def spread(values) -> dict:
    values = np.asarray(values, dtype=float)
    return {"mean": float(values.mean()), "std": float(values.std()), "n": len(values)}


def fit_one(replay: Replay, name: str, overrides: dict, seed: int, args) -> tuple:
    cfg = FitConfig(steps=args.fit_steps, eval_every=0, eval_horizon=args.horizon, seed=seed)
    return fit(replay, model=name, model_overrides=overrides, config=cfg, progress=False)


# -- hypothesis 1: depth per transition ------------------------------------------------


def datasets(args):
    """``(env_id, repeat, replay)`` for every env and action repeat asked for."""
    for env_id in args.envs:
        for repeat in args.repeats:
            yield env_id, repeat, dataset(env_id, repeat, args.transitions)


def depth(args) -> dict:
    report = {}
    for env_id, repeat, replay in datasets(args):
        rows = []
        for seed in args.seeds:
            for width in args.widths:
                for family in args.families:
                    row = fit_row(replay, family, width, seed, args)
                    rows.append(row)
                    print(
                        f"{env_id} x{repeat} seed {seed} w{width} {family:12s} "
                        f"{args.horizon}-step {row['mse_K']:.4f} "
                        f"(copy {row['copy_mse_K']:.4f}) iters {row['iters_mean']:.1f}",
                        flush=True,
                    )
        key = f"{env_id}@{repeat}"
        report[key] = {
            "env_id": env_id,
            "action_repeat": repeat,
            "transitions": len(replay),
            "episodes": replay.num_episodes,
            "runs": rows,
            **depth_summary(rows, args.widths),
        }
        if args.partial:
            write_json(args.partial, report)
    return report


def depth_summary(rows: list[dict], widths: list[int]) -> dict:
    """Per family and width the errors over seeds; the parameter ratios at LoopWM's
    50-step error (``params_vs_error.py``'s) and at its 1-step error; LoopWM against the
    GRU at each width, at both horizons."""
    summary = summarise(rows, widths)
    one_step = [{**r, "mse_K": r["mse_1"]} for r in rows]
    summary["ratio_at_matched_mse_1"] = summarise(one_step, widths)["ratio_at_matched_mse_K"]
    summary["gru_vs_loopwm"] = gru_comparison(rows, widths, "mse_K")
    summary["gru_vs_loopwm_1"] = gru_comparison(rows, widths, "mse_1")
    summary["stack_10x"] = stack_comparison(summary["table"])
    return summary


def stack_comparison(table: dict) -> list[dict]:
    """Per LoopWM width: is LoopWM's 50-step error below that of every untied stack with at
    least 10x its parameters, the spreads (mean +- std over seeds) apart? The target of
    the regime map, read without interpolation."""
    out = []
    for loop in table.get("loopwm", []):
        big = [e for e in table.get("mlp", []) if e["parameters"] >= 10 * loop["parameters"]]
        if not big:
            continue
        a = loop["mse_K"]
        out.append(
            {
                "width": loop["width"],
                "stack_widths": [e["width"] for e in big],
                "parameter_ratio": min(e["parameters"] for e in big) / loop["parameters"],
                "loopwm_better_apart": all(
                    a["mean"] + a["std"] < e["mse_K"]["mean"] - e["mse_K"]["std"] for e in big
                ),
            }
        )
    return out


def gru_comparison(rows: list[dict], widths: list[int], error: str) -> list[dict]:
    """LoopWM's ``error`` against the GRU's at each width (about equal parameters):
    ``separated`` when the spreads (mean +- std over seeds) do not overlap."""
    out = []
    for width in widths:
        loop = [r[error] for r in rows if r["family"] == "loopwm" and r["width"] == width]
        gru = [r[error] for r in rows if r["family"] == "gru" and r["width"] == width]
        if not loop or not gru:
            continue
        a, b = spread(loop), spread(gru)
        separated = a["mean"] + a["std"] < b["mean"] - b["std"] or (
            b["mean"] + b["std"] < a["mean"] - a["std"]
        )
        out.append(
            {
                "width": width,
                "loopwm": a,
                "gru": b,
                "loopwm_over_gru": a["mean"] / b["mean"],
                "separated": bool(separated),
            }
        )
    return out


# -- hypotheses 2 and 3: the contraction budget, and training for test-time depth -------

CAPS = (1, 2, 4, 8, 16, 32, 64, 128)  # test-time iteration caps
FIXED_POINT = {"tol": 1e-5, "max_iters": 1000}  # the certified fixed point, near enough


def contraction_settings() -> list[dict]:
    """``c_max`` swept with each training mode (``a_max = min(0.5, c_max / 2)``: 0.45 at
    the default ``c_max`` 0.9, whose default ``a_max`` is 0.5), then ``a_max`` 0.1 and 0.8
    at ``c_max`` 0.9."""
    settings = [
        {"c_max": c, "a_max": min(0.5, c / 2), "grad_mode": mode}
        for c in (0.5, 0.9, 0.97, 0.99)
        for mode in ("phantom", "truncated")
    ]
    return settings + [{"c_max": 0.9, "a_max": a, "grad_mode": "phantom"} for a in (0.1, 0.8)]


def contraction(args) -> dict:
    report = {}
    for env_id, repeat, replay in datasets(args):
        rows = []
        for seed in args.seeds:
            _, heldout = replay.split(FitConfig().holdout_fraction, seed)
            windows = batch_to_tensors(heldout.eval_windows(args.horizon, EVAL_WINDOWS))
            for setting in contraction_settings():
                overrides = {**width_overrides(args.widths[0]), **setting}
                model, result = fit_one(replay, "loopwm", overrides, seed, args)
                model.eval()
                cfg = model.config
                # the iterations training ran: the solver's cap (phantom) or the
                # sampled count's mean (truncated)
                train_cap = (
                    cfg.max_iters if cfg.grad_mode == "phantom" else round(cfg.train_iters_mean)
                )
                caps = [
                    {"cap": k, **errors(model, windows, tol=cfg.tol, max_iters=k)} for k in CAPS
                ]
                fixed = errors(model, windows, **FIXED_POINT)
                at_train = errors(model, windows, tol=cfg.tol, max_iters=train_cap)
                above = [c for c in caps if c["cap"] > train_cap]
                best_above = min(above, key=lambda c: c["mse_K"]) if above else None
                best = min(caps, key=lambda c: c["mse_K"])
                row = {
                    **setting,
                    "seed": seed,
                    "contraction_bound": result["contraction_bound"],
                    "train_cap": train_cap,
                    "caps": caps,
                    "fixed_point": fixed,
                    "at_train_cap": at_train,
                    # > 0: the best early cap predicts better than the fixed point
                    "best_cap": best["cap"],
                    "best_cap_gain_over_fixed_point": 1 - best["mse_K"] / fixed["mse_K"],
                    # > 0: a cap above training's lowers the 50-step error
                    "gain_above_train_cap": (
                        1 - best_above["mse_K"] / at_train["mse_K"] if best_above else None
                    ),
                }
                rows.append(row)
                print(
                    f"{env_id} x{repeat} seed {seed} c_max {setting['c_max']} a_max "
                    f"{setting['a_max']} {setting['grad_mode']:9s} fixed point "
                    f"{fixed['mse_K']:.4f} ({fixed['iters_mean']:.1f} iters), at train cap "
                    f"{train_cap} {at_train['mse_K']:.4f}, best cap {best['cap']} "
                    f"{best['mse_K']:.4f}",
                    flush=True,
                )
        report[f"{env_id}@{repeat}"] = {
            "env_id": env_id,
            "action_repeat": repeat,
            "runs": rows,
            "summary": summarise_settings(rows),
        }
        if args.partial:
            write_json(args.partial, report)
    return report


def summarise_settings(rows: list[dict]) -> list[dict]:
    out = []
    for setting in contraction_settings():
        group = [r for r in rows if all(r[k] == v for k, v in setting.items())]
        if not group:
            continue
        gains = [r["gain_above_train_cap"] for r in group if r["gain_above_train_cap"] is not None]
        out.append(
            {
                **setting,
                "fixed_point_mse_K": spread([r["fixed_point"]["mse_K"] for r in group]),
                "fixed_point_iters": spread([r["fixed_point"]["iters_mean"] for r in group]),
                "default_tol_iters": spread(
                    [r["caps"][-1]["iters_mean"] for r in group]  # tol, largest cap
                ),
                "best_cap_gain_over_fixed_point": spread(
                    [r["best_cap_gain_over_fixed_point"] for r in group]
                ),
                "gain_above_train_cap": spread(gains) if gains else None,
                "mse_K_by_cap": {
                    str(k): spread([c["mse_K"] for r in group for c in r["caps"] if c["cap"] == k])
                    for k in CAPS
                },
            }
        )
    return out


# -- hypothesis 4: where the loop spends its iterations -------------------------------

WARM_TOLS = np.logspace(0, -6, 25)  # halting tolerances swept per warm start
WARM_STARTS = ("latent", "linear", "extrapolate")
# the latent start's tolerances whose mean iterations the other starts are matched at:
# the default, and the loosest at which the 1-step error is unchanged (measured: within
# 0.1% of the default's at 1e-2, 3 seeds)
MATCH_TOLS = (1e-3, 1e-2)


def previous_latents(latent: torch.Tensor, episode: np.ndarray) -> torch.Tensor:
    """Each transition's latent one step before (``h_{t-1}``): the row above within the
    same episode; an episode's first transition has none, so its own (the latent start)."""
    first = np.r_[True, episode[1:] != episode[:-1]]
    previous = torch.cat([latent[:1], latent[:-1]])
    previous[torch.as_tensor(first)] = latent[torch.as_tensor(first)]
    return previous


@torch.no_grad()
def measure_starts(
    model,
    obs: torch.Tensor,
    actions: torch.Tensor,
    next_obs: torch.Tensor,
    episode: np.ndarray,
    contacts: np.ndarray,
) -> dict:
    """Iterations against contacts, and the 1-step error, over a tolerance sweep from
    each warm start of one fitted model (the same weights: only where the loop starts
    differs). Transitions are in episode order, so ``extrapolate`` starts from
    ``2 h_t - h_{t-1}`` of the real ``h_{t-1}``."""
    from adaptive_compute import auc, spearman

    model.eval()
    latent = model.encode(obs)
    previous = previous_latents(latent, episode)
    target = model.standardize(next_obs)
    row = {"starts": {}}
    for start in WARM_STARTS:
        variant = LoopWM(model.config.replace(warm_start=start)).eval()
        variant.load_state_dict(model.state_dict())
        sweep = []
        for tol in WARM_TOLS:
            out = variant.step(latent, actions, previous=previous, tol=float(tol), max_iters=256)
            iters = out.iters.numpy()
            predicted = variant.decode(out.latent, standardized=True)
            sweep.append(
                {
                    "tol": float(tol),
                    "iters_mean": float(iters.mean()),
                    "mse_1step": float((predicted - target).pow(2).mean()),
                    # one count for every transition ranks nothing: 0 (spearman: NaN)
                    "spearman_iters_contact": rank_or_zero(spearman(iters, contacts)),
                    "constant": bool(iters.min() == iters.max()),
                    "auc_iters_contact": auc(iters, contacts),
                    "latent": out.latent,
                }
            )
        row["starts"][start] = sweep
    # equal mean iterations: each start's figures where its mean iterations equal the
    # latent start's at each matching tolerance
    row["at_equal_iters"] = {}
    for match in MATCH_TOLS:
        base = min(row["starts"]["latent"], key=lambda r: abs(math.log(r["tol"] / match)))
        row["at_equal_iters"][f"{match:g}"] = {
            "iters_mean": base["iters_mean"],
            "mse_1step": base["mse_1step"],
            **{
                start: at_iters(sweep, base["iters_mean"]) for start, sweep in row["starts"].items()
            },
        }
    # the same fixed point from every start (at the tightest tolerance)
    tightest = [sweep[-1]["latent"] for sweep in row["starts"].values()]
    row["fixed_point_gap"] = float(
        max((other - tightest[0]).norm(dim=-1).max() for other in tightest[1:])
    )
    for sweep in row["starts"].values():
        for r in sweep:
            r.pop("latent")
    return row


def warmstart(args) -> dict:
    from adaptive_compute import collect_with_contacts

    quick = "-quick" if args.quick else ""
    train, _ = collect_with_contacts(Path(f"runs/bench/ball-train{quick}"), args.transitions, 0)
    test, contacts = collect_with_contacts(
        Path(f"runs/bench/ball-test{quick}"), args.transitions // 4, 1000
    )
    obs, actions = torch.as_tensor(test.obs), torch.as_tensor(test.action)
    next_obs = torch.as_tensor(test.next_obs)
    rows = []
    for seed in args.seeds:
        cfg = FitConfig(steps=args.fit_steps, eval_every=0, seed=seed)
        preset = "tiny" if args.quick else "default"
        model, _ = fit(train, preset=preset, config=cfg, progress=False)
        row = measure_starts(model, obs, actions, next_obs, test.episode, contacts)
        row["seed"] = seed
        print(f"seed {seed}: {json.dumps(row['at_equal_iters'])}", flush=True)
        rows.append(row)
    return {
        "env_id": "loopwm/BouncingBall-v0",
        "train_transitions": len(train),
        "test_transitions": len(test),
        "contact_fraction": float(contacts.mean()),
        "target": "Spearman(iterations, contact) >= 0.6 at equal mean iterations",
        "matching": "each start's figures interpolated (linear in mean iterations) between "
        "the swept tolerances that bracket the latent start's mean at each tolerance of "
        "MATCH_TOLS; a constant iteration count ranks at 0",
        "match_tols": list(MATCH_TOLS),
        "summary": warm_summary(rows),
        "runs": rows,
    }


def warm_summary(rows: list[dict]) -> dict:
    """Per matching tolerance: the latent start's mean iterations and 1-step error there,
    and each start's figures at those iterations (mean and spread over seeds)."""
    out = {}
    for match in rows[0]["at_equal_iters"]:
        matched = [r["at_equal_iters"][match] for r in rows]
        out[match] = {
            "iters_mean": spread([m["iters_mean"] for m in matched]),
            "mse_1step": spread([m["mse_1step"] for m in matched]),
            "starts": {
                start: {
                    key: spread([m[start][key] for m in matched])
                    for key in ("spearman_iters_contact", "auc_iters_contact")
                }
                for start in WARM_STARTS
            },
        }
    return out


# -- hypothesis 5: the loop in the agent --------------------------------------------

AGENT_MODELS = ("loopwm", "gru", "mlp", "loopwm-gate")


def model_spec(spec: str) -> tuple[str, dict]:
    """``NAME[:FIELD=VALUE,...]`` (e.g. ``loopwm:c_max=0.99``): a model and overrides."""
    name, _, fields = spec.partition(":")
    overrides = {}
    for item in filter(None, fields.split(",")):
        key, _, value = item.partition("=")
        try:
            overrides[key] = json.loads(value)  # numbers, true/false
        except json.JSONDecodeError:
            overrides[key] = value  # a word, e.g. activation=relu
    return name, overrides


def agent(args) -> dict:
    """``loopwm train`` with each world model, same budget, seeds and evaluations."""
    from agent import BUDGETS, run_dreamer

    report = {}
    for env_id in args.envs:
        steps, every = BUDGETS.get(env_id, (10_000, 2_000))
        steps = args.agent_steps or steps
        if args.quick:
            steps, every = 600, 300
        for model in args.models:
            name, overrides = model_spec(model)
            for seed in args.seeds:
                record = run_dreamer(
                    env_id,
                    steps,
                    min(every, steps),
                    seed,
                    "none",
                    args.quick,
                    model=name,
                    model_overrides=overrides,
                )
                last = record["curve"][-1]
                print(
                    f"{env_id} {model} seed {seed}: return {last['return_mean']:.1f} at "
                    f"{last['env_steps']} steps, {record['wall_seconds']:.0f} s",
                    flush=True,
                )
                report.setdefault(env_id, {}).setdefault(model, {})[str(seed)] = record
                if args.partial:
                    write_json(args.partial, report)
    return report


PARTS = {
    "depth": depth,
    "contraction": contraction,
    "warmstart": warmstart,
    "agent": agent,
}
DEFAULT_REPEATS = {"depth": [1, 4, 8, 16], "contraction": [1, 8], "warmstart": [1], "agent": [1]}
SPLIT = {"depth": "envs", "contraction": "envs", "agent": "models"}  # what --jobs splits


def run_in_parallel(args, argv: list[str]) -> dict:
    """One process per env (per model for ``agent``), ``args.jobs`` at a time, one thread
    each; their results merged."""
    key = SPLIT[args.part]
    units = list(getattr(args, key))
    with tempfile.TemporaryDirectory() as tmp:
        outs = {unit: Path(tmp) / f"{i}.json" for i, unit in enumerate(units)}
        worker = [sys.executable, __file__, *argv, "--jobs", "1", "--threads", "1"]
        commands = [[*worker, f"--{key}", u, "--partial", str(outs[u])] for u in units]
        code = run_side_by_side(commands, args.jobs)
        if code:
            raise SystemExit(code)
        if args.quick:
            return {}
        merged: dict = {}
        for unit in units:
            for name, part in json.loads(outs[unit].read_text()).items():
                if key == "models":  # {env: {model: runs}}: merge per env
                    merged.setdefault(name, {}).update(part)
                else:
                    merged[name] = part
        return merged


def without_option(argv: list[str], option: str) -> list[str]:
    """``argv`` less ``option VALUE`` (or ``option=VALUE``)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(option + "="):
            out.append(arg)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", nargs="?", choices=sorted(PARTS), help="(--quick: all if none)")
    parser.add_argument("--envs", nargs="+", help="default: per part")
    parser.add_argument("--repeats", nargs="+", type=int, help="default: per part")
    parser.add_argument(
        "--widths", nargs="+", type=int, default=[16, 32, 64], help="contraction: the first"
    )
    parser.add_argument("--families", nargs="+", default=list(DEPTH_FAMILIES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--fit-steps", type=int, default=1000)
    parser.add_argument(
        "--models", nargs="+", default=list(AGENT_MODELS), help="agent: NAME[:FIELD=VALUE,...]"
    )
    parser.add_argument("--agent-steps", type=int, help="agent: real steps (default: its budget)")
    parser.add_argument("--horizon", type=int, default=50, help="K of the K-step error")
    parser.add_argument("--transitions", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--jobs", type=int, default=1, help="envs (agent: models) side by side, one process each"
    )
    parser.add_argument("--partial", type=Path, help=argparse.SUPPRESS)  # a worker's output
    parser.add_argument("--out", type=Path, help="default: results/regimes_PART.json")
    parser.add_argument("--quick", action="store_true", help="smoke run, writes nothing")
    argv = sys.argv[1:]
    args = parser.parse_args()
    if args.part is None:
        if not args.quick:
            parser.error(f"choose a part: {', '.join(PARTS)}")
        for part in PARTS:  # the smoke run of every part
            print(f"-- {part}", flush=True)
            code = subprocess.run([sys.executable, __file__, part, *argv]).returncode
            if code:
                return code
        return 0
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    results = run_part(args, argv)
    if args.quick or args.partial:
        if args.quick and not args.partial:
            print(json.dumps(results, default=str)[:1000])
        return 0
    out = args.out or RESULTS / f"regimes_{args.part}.json"
    settings = ("envs", "repeats", "widths", "families", "models", "seeds", "fit_steps")
    report = {
        **provenance(),
        "date": time.strftime("%Y-%m-%d"),
        "part": args.part,
        "settings": {k: getattr(args, k) for k in settings}
        | {
            "horizon": args.horizon,
            "transitions": args.transitions,
            "episode_transitions": EPISODE_STEPS,
        },
        "seconds": round(time.perf_counter() - started),
        "results": results,
    }
    write_json(out, report)
    print(f"wrote {out}")
    return 0


def run_part(args, argv: list[str]) -> dict:
    """Fill in the part's defaults, then run it (in ``args.jobs`` processes if asked)."""
    args.repeats = args.repeats or DEFAULT_REPEATS[args.part]
    args.envs = args.envs or (["InvertedPendulum-v5"] if args.part == "agent" else list(ENVS))
    if args.part == "contraction" and "--widths" not in argv:
        args.widths = [32]
    if args.part == "warmstart" and "--fit-steps" not in argv:
        args.fit_steps = 2000  # as adaptive_compute.py
    if args.quick:
        args.repeats, args.widths, args.seeds = args.repeats[:2], [8], [0]
        args.fit_steps, args.horizon, args.transitions = 10, 5, 1000
        args.models = args.models[:2]
    if args.part in SPLIT and args.jobs > 1 and args.partial is None:
        return run_in_parallel(args, without_option(argv, "--jobs"))
    return PARTS[args.part](args)


if __name__ == "__main__":
    sys.exit(main())
