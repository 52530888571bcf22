"""Write docs/results.md: the prose of benchmarks/results_template.md with every table
generated from benchmarks/results/*.json, so no figure in a table is typed by hand; and
the README's tables, between ``<!-- table: NAME -->`` and ``<!-- end table -->``."""

from __future__ import annotations

import argparse
import json
import re
import sys
from functools import partial
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
TEMPLATE = Path(__file__).parent / "results_template.md"
OUTPUT = Path(__file__).parents[1] / "docs" / "results.md"
README = Path(__file__).parents[1] / "README.md"


def pm(stat: dict, digits: int = 3) -> str:
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def fit_table() -> str:
    report = json.loads((RESULTS / "fit_baselines.json").read_text())
    k = report["fit"]["eval_horizon"]
    rows = [
        f"| model | parameters | 1-step MSE | {k}-step MSE | loop iterations | fit seconds |",
        "|---|---|---|---|---|---|",
    ]
    any_model = next(iter(report["summary"].values()))
    for name, s in report["summary"].items():
        rows.append(
            f"| {name} | {s['parameters']:,} | {pm(s['obs_mse_1'], 4)} | {pm(s['obs_mse_K'])} | "
            f"{s['iters_mean']['mean']:.2f} | {s['train_seconds']['mean']:.0f} |"
        )
    rows.append(
        f"| copy last observation | 0 | {pm(any_model['copy_mse_1'], 4)} | "
        f"{pm(any_model['copy_mse_K'])} | | |"
    )
    return "\n".join(rows)


def throughput_table() -> str:
    report = json.loads((RESULTS / "dream_throughput.json").read_text())
    real = report["real_steps_per_second"]
    rows = [
        "| world model | parameters | envs (N) | imagined steps/s | × real env | loop iterations "
        "| model GFLOP/s | bare matmul GFLOP/s | fraction |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["dream"]:
        rows.append(
            f"| {r['preset']} | {r['parameters']:,} | {r['num_envs']} | "
            f"{r['steps_per_second']:,.0f} | {r['ratio_to_real_single_env']:.1f} | "
            f"{r['loop_iters_mean']:.1f} | {r['model_flops_per_second'] / 1e9:.2f} | "
            f"{r['matmul_flops_per_second'] / 1e9:.2f} | {r['flops_fraction']:.0%} |"
        )
    rows.append(f"| real {report['env_id']} | | 1 | {real['single_env']:,.0f} | 1.0 | | | | |")
    return "\n".join(rows)


DYNA_REPORTS = ("dyna_sac.json", "dyna_sac_rollouts400.json", "dyna_sac_rollouts50.json")


def dyna_reports(names: tuple[str, ...] = DYNA_REPORTS) -> list[dict]:
    """The SAC baselines' run, then the Dyna runs (one JSON per rollouts setting)."""
    return [json.loads((RESULTS / n).read_text()) for n in names if (RESULTS / n).exists()]


def dyna_table(names: tuple[str, ...] = DYNA_REPORTS) -> str:
    """Real return of the SAC variants at each evaluation step, mean ± std over seeds
    (and each seed's), from ``names`` (default: the InvertedPendulum-v5 reports)."""
    reports = dyna_reports(names)
    steps = [k for k in reports[0]["summary"][next(iter(reports[0]["summary"]))] if k.isdigit()]
    head = " | ".join(f"return at {int(s) // 1000}k real steps" for s in steps)
    rows = [f"| agent | {head} | per seed at {int(steps[-1]) // 1000}k | wall seconds |"]
    rows.append("|---|" + "---|" * (len(steps) + 2))
    for report in reports:
        config = report["dyna_config"]
        options = [f"{config['rollouts']} rollouts/refit"]
        if config.get("ensemble", 1) > 1:  # the ensemble's options, where any are on
            options.append(f"ensemble {config['ensemble']}, {config['ensemble_step']} member")
            for name in ("uncertainty_penalty", "uncertainty_limit", "uncertainty_halt"):
                if config.get(name):
                    options.append(f"{name.removeprefix('uncertainty_')} {config[name]}")
        for variant, s in report["summary"].items():
            label = f"{variant} ({'; '.join(options)})" if "dyna" in variant else variant
            cells = " | ".join(pm(s[step], 1) for step in steps)
            seeds = ", ".join(f"{r:.0f}" for r in s[steps[-1]]["per_seed"])
            rows.append(f"| {label} | {cells} | {seeds} | {s['wall_seconds_mean']:.0f} |")
    return "\n".join(rows)


def agent_runs() -> dict:
    """``{env: {variant: {seed: record}}}`` merged from every results/agent*.json."""
    runs: dict = {}
    for path in sorted(RESULTS.glob("agent*.json")):
        for env_id, variants in json.loads(path.read_text())["runs"].items():
            for variant, seeds in variants.items():
                runs.setdefault(env_id, {}).setdefault(variant, {}).update(seeds)
    return runs


def agent_table() -> str:
    import numpy as np

    rows = [
        "| env | agent | real steps | eval return (mean ± std over seeds) | per seed | "
        "ms per real step | wall seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for env_id, variants in agent_runs().items():
        for variant, seeds in variants.items():
            finals = [r["curve"][-1]["return_mean"] for r in seeds.values()]
            steps = "/".join(str(s) for s in sorted({r["steps"] for r in seeds.values()}))
            wall = np.mean([r["wall_seconds"] for r in seeds.values()])
            per_step = np.mean(  # over the steps each run took (a stopped run took fewer)
                [r["wall_seconds"] / r["curve"][-1]["env_steps"] * 1000 for r in seeds.values()]
            )
            stat = f"{np.mean(finals):.1f} ± {np.std(finals):.1f}"
            if len(finals) == 1:
                stat = f"{finals[0]:.1f} (1 seed)"
            per_seed = ", ".join(  # "@ step" marks a run that stopped at its threshold
                f"{r['curve'][-1]['return_mean']:.0f}"
                + (
                    f" @ {r['curve'][-1]['env_steps']}"
                    if r.get("stopped") == "reward_threshold"
                    else ""
                )
                for r in seeds.values()
            )
            rows.append(
                f"| {env_id} | {variant} | {steps} | {stat} | {per_seed} | {per_step:.1f} | "
                f"{wall:.0f} |"
            )
    return "\n".join(rows)


def _spread(values: list[float], digits: int = 1) -> str:
    import numpy as np

    if len(values) == 1:
        return f"{values[0]:.{digits}f} (1 seed)"
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"


def speed_table() -> str:
    """ms per real step while learning, the agent against SAC, per env."""
    import numpy as np

    report = json.loads((RESULTS / "speed.json").read_text())
    rows = [
        "| env | learner | ms per real step | per seed | × SAC |",
        "|---|---|---|---|---|",
    ]
    for env_id, learners in report["ms_per_step"].items():
        sac = np.mean(list(learners["sac"].values()))
        for learner in ("dreamer", "sac"):
            values = list(learners[learner].values())
            per_seed = ", ".join(f"{v:.1f}" for v in values)
            ratio = np.mean(values) / sac
            rows.append(f"| {env_id} | {learner} | {_spread(values)} | {per_seed} | {ratio:.1f} |")
    return "\n".join(rows)


def solve_table() -> str:
    """Real steps and wall seconds to solve InvertedPendulum-v5, the agent against SAC."""
    import numpy as np

    report = json.loads((RESULTS / "speed.json").read_text())
    rows = [
        "| learner | solved | real steps to solve | wall s to solve | wall s without "
        "evaluations | per seed (steps / s) |",
        "|---|---|---|---|---|---|",
    ]
    means = {}
    for learner in ("dreamer", "sac"):
        seeds = report["solve"][learner].values()
        done = [r for r in seeds if r["solved"]]
        steps = [r["env_steps"] for r in done]
        wall = [r["wall_seconds"] for r in done]
        train = [r["wall_seconds_without_eval"] for r in done]
        means[learner] = (np.mean(steps), np.mean(wall), np.mean(train)) if done else None
        per_seed = ", ".join(
            f"{r['env_steps']} / {r['wall_seconds']:.0f}" if r["solved"] else "not solved"
            for r in seeds
        )
        rows.append(
            f"| {learner} | {len(done)} of {len(seeds)} | {_spread(steps, 0) if done else '-'} "
            f"| {_spread(wall, 0) if done else '-'} | {_spread(train, 0) if done else '-'} "
            f"| {per_seed} |"
        )
    if means["dreamer"] and means["sac"]:
        ratio = [d / s for d, s in zip(means["dreamer"], means["sac"], strict=True)]
        rows.append(f"| dreamer ÷ SAC | | {ratio[0]:.2f} | {ratio[1]:.2f} | {ratio[2]:.2f} | |")
    return "\n".join(rows)


def solve_ab_table(name: str = "solve_ab") -> str:
    """Two agent configurations side by side: real steps and wall seconds to solve."""
    import numpy as np

    report = json.loads((RESULTS / f"{name}.json").read_text())
    names = list(report["runs"])
    rows = [
        "| configuration | flags | solved | real steps: median (mean) | wall s: median (mean) "
        "| ms per update | predicted continuation: terminal / other | per seed (steps / s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    medians = {}
    for text in report["configs"]:
        name, _, flags = text.partition("=")
        runs = list(report["runs"][name].values())
        steps = [r["env_steps"] for r in runs]
        wall = [r["wall_seconds"] for r in runs]
        medians[name] = (np.median(steps), np.median(wall))
        per_seed = ", ".join(
            f"{r['env_steps']} / {r['wall_seconds']:.0f}"
            if r["solved"]
            else f"not solved ({r['curve'][-1]['return_mean']:.0f} at {r['env_steps']})"
            for r in runs
        )
        ms = [r["ms_per_update"] for r in runs]
        cont = [r["continuation"] for r in runs if r.get("continuation")]
        cont = (
            f"{np.mean([c['terminal'] for c in cont]):.2f} / "
            f"{np.mean([c['other'] for c in cont]):.2f}"
            if cont
            else "-"
        )
        rows.append(
            f"| {name} | `{flags or '(defaults)'}` | {sum(r['solved'] for r in runs)} of "
            f"{len(runs)} | {np.median(steps):.0f} ({np.mean(steps):.0f}) | "
            f"{np.median(wall):.0f} ({np.mean(wall):.0f}) | {min(ms):.0f}–{max(ms):.0f} "
            f"| {cont} | {per_seed} |"
        )
    first, second = names
    ratio = [b / a for a, b in zip(medians[first], medians[second], strict=True)]
    rows.append(f"| {second} ÷ {first} (medians) | | | {ratio[0]:.2f} | {ratio[1]:.2f} | | | |")
    return "\n".join(rows)


def update_ab_table(name: str = "update_ab") -> str:
    """Milliseconds per agent update of two commits, measured interleaved."""
    report = json.loads((RESULTS / f"{name}.json").read_text())
    rows = [
        "| commit | ms per update: median (runs) | world-model step ms | actor-critic step ms |",
        "|---|---|---|---|",
    ]
    for rev, runs in report["runs"].items():
        median = report["medians"][rev]
        each = ", ".join(f"{r['ms_per_update']:.0f}" for r in runs)
        rows.append(
            f"| {rev} | {median['ms_per_update']:.1f} ({each}) | "
            f"{median['world_model_ms']:.1f} | {median['actor_critic_ms']:.1f} |"
        )
    machine = report["machine"]
    rows.append(
        f"| ratio | {report['ratio']:.2f}x | | |\n\n{report['env_id']}, "
        f"{report['updates']} updates per run, {machine['torch_threads']} torch thread(s), "
        f"matmul {machine['matmul_gflops_1_thread']:.0f} GFLOP/s per thread."
    )
    return "\n".join(rows)


def speed_machine() -> str:
    report = json.loads((RESULTS / "speed.json").read_text())
    machine = report["machine"]
    return (
        f"Measured with {machine['torch_threads']} torch threads on {machine['cpus']} CPUs "
        f"whose single-thread float32 matmul runs at {machine['matmul_gflops_1_thread']:.0f} "
        f"GFLOP/s (`{report['command']}`)."
    )


def _loop_behaviour() -> dict:
    return json.loads((RESULTS / "loop_behaviour.json").read_text())


def stability_table() -> str:
    report = _loop_behaviour()
    rows = [
        "| model | seeds | max latent norm (worst seed) | max start norm | NaN/inf rollouts "
        "| proven bound | seconds per seed |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, seeds in report["stability"].items():
        runs = list(seeds.values())
        bounds = [r["proven_bound"] for r in runs if "proven_bound" in r]
        bound = f"{max(bounds):.1f} (largest)" if bounds else "none"
        rows.append(
            f"| {name} | {len(runs)} | {max(r['latent_norm_max'] for r in runs):.1f} | "
            f"{max(r['start_norm_max'] for r in runs):.1f} | "
            f"{max(r['nan_or_inf_fraction'] for r in runs):.1%} | {bound} | "
            f"{sum(r['seconds'] for r in runs) / len(runs):.0f} |"
        )
    return "\n".join(rows)


def halting_table() -> str:
    report = _loop_behaviour()
    rows = [
        "| seed | tol | mean iterations | 10-step MSE | fixed 32 iterations: MSE | saved |",
        "|---|---|---|---|---|---|",
    ]
    for seed, r in report["loopwm"].items():
        fixed = r["halting"]["fixed"][-1]
        best = r["halting"].get("saving_at_1pct")
        if best is None:
            rows.append(f"| {seed} | none within 1% | | | {fixed['mse_K']:.4f} | 0% |")
            continue
        match = next(c for c in r["halting"]["certified"] if c["tol"] == best["tol"])
        rows.append(
            f"| {seed} | {best['tol']:g} | {best['iters_mean']:.2f} | {match['mse_K']:.4f} | "
            f"{fixed['mse_K']:.4f} | {best['fraction_saved']:.0%} |"
        )
    return "\n".join(rows)


def gate_table() -> str:
    rows = ["| seed | gate threshold | mean iterations | 10-step MSE |", "|---|---|---|---|"]
    for seed, sweep in _loop_behaviour()["gate"].items():
        for g in sweep:
            rows.append(f"| {seed} | {g['threshold']} | {g['iters_mean']:.1f} | {g['mse_K']:.4f} |")
    return "\n".join(rows)


def params_vs_error_table(env_id: str) -> str:
    report = json.loads((RESULTS / "params_vs_error.json").read_text())
    k = report["fit"]["eval_horizon"]
    part = report["envs"][env_id]
    out = [
        f"**{env_id}** ({part['data']['episodes']} episodes, "
        f"{len(report['seeds'])} seeds, mean ± std)",
        "",
        f"| model | width | parameters | transition parameters | 1-step MSE | {k}-step MSE "
        "| iterations | MFLOP per transition |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for family, entries in part["table"].items():
        for e in entries:
            width = e["width"]
            if e["fit_width"] != e["width"]:  # mlp-matched: narrowed to LoopWM's parameters
                width = f"{e['fit_width']} (matches LoopWM {e['width']})"
            out.append(
                f"| {family} | {width} | {e['parameters']:,} | "
                f"{e['transition_parameters']:,} | {pm(e['mse_1'])} | {pm(e['mse_K'])} | "
                f"{e['iters_mean']['mean']:.1f} | "
                f"{e['flops_per_transition']['mean'] / 1e6:.3f} |"
            )
    return "\n".join(out)


def matched_ratio_table(env_id: str) -> str:
    report = json.loads((RESULTS / "params_vs_error.json").read_text())
    k = report["fit"]["eval_horizon"]
    part = report["envs"][env_id]
    widths = [e["width"] for e in part["table"]["loopwm"]]
    out = [
        f"Parameters each family needs to match LoopWM's {k}-step error, over LoopWM's "
        "(total parameters; ≤ / ≥: outside the measured sizes):",
        "",
        "| family | " + " | ".join(f"LoopWM width {w}" for w in widths) + " |",
        "|---|" + "---|" * len(widths),
    ]
    marks = {"at most": "≤ ", "at least": "≥ ", "interpolated": ""}
    for family, scopes in part["ratio_at_matched_mse_K"].items():
        cells = [f"{marks[r['kind']]}{r['ratio']:.2f}" for r in scopes["total"]]
        out.append(f"| {family} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def adaptive_table() -> str:
    report = json.loads((RESULTS / "adaptive_compute.json").read_text())
    rows = [
        "| tol | mean iterations | Spearman with contact | ROC AUC (contact) |",
        "|---|---|---|---|",
    ]
    for tol in report["runs"][0]["by_tol"]:
        values = {
            k: [r["by_tol"][tol][k] for r in report["runs"]]
            for k in ("iters_mean", "spearman_iters_contact", "auc_iters_contact")
        }
        cells = [f"{sum(v) / len(v):.3f} ({min(v):.3f} to {max(v):.3f})" for v in values.values()]
        rows.append(f"| {float(tol):g} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _uncertainty(name: str = "uncertainty") -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text())


SIGNALS = {
    "uncertainty": "ensemble u",
    "latent_disagreement": "ensemble u in latent space",
    "residual": "loop residual",
    "iters": "loop iterations",
}


def calibration_table() -> str:
    """Spearman of each per-sample signal with the held-out 1-step error, per env."""
    import numpy as np

    report = _uncertainty()
    rows = [
        "| env | model | 1-step MSE | " + " | ".join(SIGNALS.values()) + " |",
        "|---|---|---|" + "---|" * len(SIGNALS),
    ]
    for env_id, seeds in report["calibration"].items():
        for name in ("ensemble", "single"):
            runs = [seed[name] for seed in seeds.values()]
            cells = []
            for signal in SIGNALS:
                values = [r["spearman_1"][signal] for r in runs if signal in r["spearman_1"]]
                cells.append(_spread(values, 2) if values else "-")
            mse = [r["obs_mse_1"] for r in runs]
            label = f"{name} ({runs[0]['parameters']:,} parameters)"
            rows.append(
                f"| {env_id} ({seeds[next(iter(seeds))]['preset']}) | {label} | "
                f"{np.mean(mse):.4f} | " + " | ".join(cells) + " |"
            )
    return "\n".join(rows)


def uncertainty_cost_table() -> str:
    report = _uncertainty()
    k = report["members"]
    rows = [
        f"| preset | batch | one model (ms) | ensemble of {k} (ms) | × one model | "
        f"{k} models in turn (ms) | × one model |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["cost"]:
        rows.append(
            f"| {r['preset']} | {r['batch']} | {r['ms_single']:.1f} | {r['ms_ensemble']:.1f} | "
            f"{r['ratio']:.1f} | {r['ms_sequential']:.1f} | {r['ratio_sequential']:.1f} |"
        )
    return "\n".join(rows)


DREAM_VARIANTS = {
    "single": "single model",
    "ensemble": "ensemble",
    "penalty": "ensemble, r - λ·u",
    "limit": "ensemble, truncated at u > limit",
    "branched": "ensemble, 10-step episodes from the data's states",
    "branched_penalty": "ensemble, 10-step episodes from the data's states, r - λ·u",
    "sample": "ensemble, termination sampled from 1 - cont",
    "halt": "ensemble, terminated at u > limit (MOReL's halt)",
    "random": "ensemble, one random member per step",
    "random_halt": "ensemble, one random member per step, terminated at u > limit",
}
README_DREAM_VARIANTS = ("single", "ensemble", "penalty", "limit")  # the README's length


def _dream_variants(
    name: str = "uncertainty", variants=tuple(DREAM_VARIANTS)
) -> list[tuple[str, list[dict]]]:
    """``(label, per-seed records)`` of each dream-only SAC variant that ran."""
    report = _uncertainty(name)
    found = []
    for variant in variants:
        label = DREAM_VARIANTS[variant]
        runs = [seed[variant] for seed in report["dream"].values() if variant in seed]
        label = label.replace("λ", f"{report['penalty']:g}").replace(
            "limit", f"{report['limit']:g}"
        )
        if runs:
            found.append((label, runs))
    return found


def dream_sac_table(name: str = "uncertainty") -> str:
    """SAC trained only in the dream: dream, raw-dream and real returns per variant."""
    import numpy as np

    rows = [
        "| SAC trained in | return in its dream | in whole dream episodes without penalty or "
        "limit | "
        "real return | per seed (real) | real ÷ dream without penalty |",
        "|---|---|---|---|---|---|",
    ]
    for label, runs in _dream_variants(name):
        dream = [r["dream_return"][0] for r in runs]
        raw = [r["dream_return_raw"][0] for r in runs]
        real = [r["real_return"][0] for r in runs]
        rows.append(
            f"| {label} | {_spread(dream)} | {_spread(raw)} | {_spread(real)} | "
            + ", ".join(f"{v:.0f}" for v in real)
            + f" | {np.mean(real) / np.mean(raw):.0%} |"
        )
    return "\n".join(rows)


def dream_honesty_table(name: str = "uncertainty") -> str:
    """The model along each dream-trained SAC's real episodes (``honesty``), mean over
    seeds: where the dream lied."""
    import numpy as np

    rows = [
        "| SAC trained in | real return | model's 1-step error there | continuation at the "
        "real terminations | largest reach | u there ÷ u in the dream | "
        "Spearman(u, error) |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, runs in _dream_variants(name):
        runs = [r for r in runs if "honesty" in r]
        if not runs:
            continue
        h = [r["honesty"] for r in runs]
        reach = np.array([x["reach"] for x in h])  # (seeds, obs_dim)
        dim = int(reach.mean(0).argmax())
        ratio = [x["uncertainty"] / x["dream_uncertainty"] for x in h]
        rows.append(
            f"| {label} | {_spread([r['real_return'][0] for r in runs], 0)} | "
            f"{_spread([x['model_error'] for x in h], 3)} | "
            f"{_spread([x['cont_at_terminations'] for x in h], 2)} | "
            f"dimension {dim}: {_spread(reach[:, dim], 1)} | {_spread(ratio, 1)} | "
            f"{_spread([x['uncertainty_error_spearman'] for x in h], 2)} |"
        )
    return "\n".join(rows)


def dream_sac_short() -> str:
    """The README's version of :func:`dream_sac_table`."""
    rows = ["| SAC trained only in | dream return | real return |", "|---|---|---|"]
    for label, runs in _dream_variants(variants=README_DREAM_VARIANTS):
        raw = [r["dream_return_raw"][0] for r in runs]
        real = [r["real_return"][0] for r in runs]
        rows.append(f"| {label} | {_spread(raw, 0)} | {_spread(real, 0)} |")
    return "\n".join(rows)


PIXEL_BAR = 900  # issue 14's bar for the pixel task


def op_costs_table() -> str:
    """tanh against the loop's sigmoid form, and torch.compile of the actor's MLP."""
    report = json.loads((RESULTS / "op_costs.json").read_text())
    rows = [
        "| operation | shape | torch | loopwm | ratio |",
        "|---|---|---|---|---|",
    ]
    for r in report["tanh"]:
        shape = " x ".join(str(n) for n in r["shape"])
        rows.append(
            f"| tanh, no gradient (µs) | {shape} | {r['us_torch_tanh']:.1f} | "
            f"{r['us_loop_tanh']:.1f} | {r['ratio']:.2f} |"
        )
    c = report.get("compile")
    if c:
        shape = " x ".join(str(n) for n in c["batch"])
        rows.append(
            f"| actor MLP forward + backward (µs), eager vs torch.compile | {shape} | "
            f"{c['us_eager']:.0f} | {c['us_compiled']:.0f} (compiling: "
            f"{c['compile_seconds']:.0f} s) | {c['ratio']:.2f} |"
        )
    gflops = report["machine"]["matmul_gflops_1_thread"]
    threads = report["machine"]["torch_threads"]
    return (
        "\n".join(rows) + f"\n\n{threads} torch thread(s), matmul {gflops:.0f} GFLOP/s per thread."
    )


def dmc_table() -> str:
    """DeepMind Control at 100k agent steps (action repeat 2): the agent and SAC as run
    here beside the published TD-MPC2 and DreamerV3 returns (results/published_dmc_100k.csv,
    copied from the TD-MPC2 repository's results/ files)."""
    import csv

    import numpy as np

    published: dict = {}
    with (RESULTS / "published_dmc_100k.csv").open() as f:
        for row in csv.DictReader(f):
            published.setdefault(row["task"], {}).setdefault(row["algorithm"], []).append(
                float(row["return"])
            )
    runs = agent_runs()
    rows = [
        "| task | loopwm agent | SAC | TD-MPC2 (published) | DreamerV3 (published) |",
        "|---|---|---|---|---|",
    ]

    def ours(task: str, variant: str) -> str:
        seeds = runs.get(f"dm_control/{task}-v0", {}).get(variant, {})
        if not seeds:
            return "not run"
        finals = [r["curve"][-1] for r in seeds.values()]
        steps = {c["env_steps"] for c in finals}
        cell = _spread([c["return_mean"] for c in finals])
        if steps != {100_000}:
            cell += " at " + "/".join(f"{s // 1000}k" for s in sorted(steps))
        if len(finals) > 1:
            cell += " (" + ", ".join(f"{c['return_mean']:.0f}" for c in finals) + ")"
        return cell

    for task, algos in published.items():
        theirs = [
            f"{np.mean(algos[a]):.1f} ± {np.std(algos[a]):.1f} ({len(algos[a])} seeds)"
            if a in algos
            else "not available here"
            for a in ("tdmpc2", "dreamerv3")
        ]
        rows.append(
            f"| {task} | {ours(task, 'dreamer')} | {ours(task, 'sac')} | "
            f"{theirs[0]} | {theirs[1]} |"
        )
    return "\n".join(rows)


def pixels_table() -> str:
    """The same agent on state and on pixel observations of one env (results/pixels.json):
    real steps and wall seconds to the first evaluation >= PIXEL_BAR."""
    report = json.loads((RESULTS / "pixels.json").read_text())
    rows = [
        f"| observations | seed | first eval ≥ {PIXEL_BAR}: real steps | wall seconds | "
        "last eval return | real steps run |",
        "|---|---|---|---|---|---|",
    ]
    for env_id, variants in report["runs"].items():
        for seed, run in variants["dreamer"].items():
            hit = next((e for e in run["curve"] if e["return_mean"] >= PIXEL_BAR), None)
            steps, wall = (
                (f"{hit['env_steps']:,}", f"{hit['wall_seconds']:.0f}")
                if hit
                else ("not reached", "")
            )
            last = run["curve"][-1]
            rows.append(
                f"| {env_id} | {seed} | {steps} | {wall} | {last['return_mean']:.0f} | "
                f"{last['env_steps']:,} |"
            )
    return "\n".join(rows)


def pixels_cost_table() -> str:
    """One agent update and its memory, state against pixels
    (results/update_profile_pixels.json)."""
    report = json.loads((RESULTS / "update_profile_pixels.json").read_text())
    rows = [
        "| observations | ms per update | world-model update ms | act ms | env step ms | "
        "replay bytes per transition | peak memory MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["runs"]:
        rows.append(
            f"| {r['env_id']} | {r['ms_per_update']:.0f} | "
            f"{r['ms_per_update_by_phase']['agent/world_model_update']:.0f} | "
            f"{r['ms_per_act']:.2f} | {r['ms_per_env_step']:.2f} | "
            f"{r['replay_bytes_per_transition']:,.0f} | {r['peak_rss_mb']:,.0f} |"
        )
    return "\n".join(rows)


def regime_report(part: str) -> dict:
    """``results/regimes_PART.json`` merged with any later runs of the same part
    (``regimes_PART_*.json``, e.g. one more action repeat): their results, sorted by env
    and repeat, and the union of their repeats."""
    paths = [RESULTS / f"regimes_{part}.json", *sorted(RESULTS.glob(f"regimes_{part}_*.json"))]
    reports = [json.loads(p.read_text()) for p in paths if p.exists()]
    merged = {**reports[0], "commands": [r["command"] for r in reports]}
    if len(reports) > 1:
        results = {k: v for r in reports for k, v in r["results"].items()}
        merged["results"] = dict(
            sorted(results.items(), key=lambda kv: (kv[1]["env_id"], kv[1]["action_repeat"]))
        )
        repeats = {n for r in reports for n in r["settings"]["repeats"]}
        merged["settings"] = {**reports[0]["settings"], "repeats": sorted(repeats)}
    return merged


RATIO_MARKS = {"at most": "≤ ", "at least": "≥ ", "interpolated": ""}


def _ratio(entry: dict) -> str:
    return f"{RATIO_MARKS[entry['kind']]}{entry['ratio']:.2f}"


def regime_depth_table() -> str:
    report = regime_report("depth")
    k = report["settings"]["horizon"]
    widths = " / ".join(str(w) for w in report["settings"]["widths"])
    rows = [
        f"| env | action repeat | LoopWM 1-step MSE | LoopWM {k}-step MSE (copy) "
        f"| untied stack ÷ LoopWM parameters at equal 1-step / {k}-step error "
        f"| LoopWM ÷ GRU error, 1-step / {k}-step | LoopWM iterations |",
        "|---|---|---|---|---|---|---|",
    ]
    for part in report["results"].values():
        loop = part["table"]["loopwm"]
        copy = sum(r["copy_mse_K"] for r in part["runs"]) / len(part["runs"])
        ratios = [
            " / ".join(_ratio(r) for r in part[key].get("mlp", {}).get("total", []))
            for key in ("ratio_at_matched_mse_1", "ratio_at_matched_mse_K")
        ]
        gru = [
            " / ".join(f"{g['loopwm_over_gru']:.2f}{'*' * g['separated']}" for g in part[key])
            for key in ("gru_vs_loopwm_1", "gru_vs_loopwm")
        ]
        rows.append(
            f"| {part['env_id']} | {part['action_repeat']} | "
            + " / ".join(pm(e["mse_1"], 4) for e in loop)
            + " | "
            + " / ".join(pm(e["mse_K"]) for e in loop)
            + f" ({copy:.3f}) | {ratios[0]}; {ratios[1]} | {gru[0]}; {gru[1]} | "
            + " / ".join(f"{e['iters_mean']['mean']:.1f}" for e in loop)
            + " |"
        )
    caption = (
        f"Widths {widths} (each cell: one value per width); ≤ / ≥: outside the measured "
        "sizes; * : the two spreads (mean ± std over seeds) do not overlap."
    )
    return caption + "\n\n" + "\n".join(rows)


def regime_map_table() -> str:
    """One row per hypothesis: the best regime measured, its figure, the target, met."""
    rows = ["| hypothesis | best regime measured | target | met |", "|---|---|---|---|"]
    depth = regime_report("depth")
    stack, gru, both, cells = [], [], [], 0
    for part in depth["results"].values():
        name = f"{part['env_id'].split('/')[-1]} x{part['action_repeat']}"
        beats_gru = {
            g["width"] for g in part["gru_vs_loopwm"] if g["separated"] and g["loopwm_over_gru"] < 1
        }
        gru += [f"{name} width {w}" for w in sorted(beats_gru)]
        for c in part["stack_10x"]:
            cells += 1
            if c["loopwm_better_apart"]:
                stack.append(f"{name} width {c['width']}")
                if c["width"] in beats_gru:
                    both.append(f"{name} width {c['width']}")
    repeats, k = ", ".join(map(str, depth["settings"]["repeats"])), depth["settings"]["horizon"]
    rows.append(
        f"| 1. depth per transition (action repeat {repeats}; HalfCheetah, contact task) "
        f"| LoopWM's {k}-step error below every untied stack with ≥ 10x its parameters, "
        f"spreads apart: {len(stack)} of {cells} regime-widths{_named(stack)}; below the "
        f"GRU's at equal width, spreads apart: {len(gru)}{_named(gru)} "
        f"| both at once | {'yes: ' + ', '.join(both) if both else 'no'} |"
    )
    contraction = regime_report("contraction")
    cells, gains, lower_everywhere = [], [], None
    for part in contraction["results"].values():
        summary = part["summary"]
        # the sweep's default: c_max 0.9 with the phantom gradient (a_max kept at c_max / 2)
        reference = next(
            s
            for s in summary
            if s["c_max"] == 0.9 and s["a_max"] == 0.45 and s["grad_mode"] == "phantom"
        )
        ref = reference["fixed_point_mse_K"]
        top = min(summary, key=lambda s: s["fixed_point_mse_K"]["mean"])
        change = top["fixed_point_mse_K"]["mean"] / ref["mean"] - 1
        apart = top["fixed_point_mse_K"]["mean"] + top["fixed_point_mse_K"]["std"] < (
            ref["mean"] - ref["std"]
        )
        cells.append(
            f"{part['env_id'].split('/')[-1]}: c_max {top['c_max']}, a_max {top['a_max']}, "
            f"{top['grad_mode']} ({100 * change:+.0f}%{', spreads apart' if apart else ''})"
        )
        better = {
            (s["c_max"], s["a_max"], s["grad_mode"])
            for s in summary
            if s["fixed_point_mse_K"]["mean"] < ref["mean"]
        }
        lower_everywhere = better if lower_everywhere is None else lower_everywhere & better
        gains += [
            (s["gain_above_train_cap"]["mean"], s, part)
            for s in summary
            if s["gain_above_train_cap"]
        ]
    everywhere = ", ".join(f"c_max {c}, a_max {a}, {m}" for c, a, m in sorted(lower_everywhere))
    rows.append(
        "| 2. contraction budget (c_max 0.5–0.99, a_max 0.1–0.8) | lowest fixed-point "
        f"{contraction['settings']['horizon']}-step error against c_max 0.9 (a_max 0.45), "
        f"phantom: {'; '.join(cells)}; lower on both envs: {everywhere or 'none'} "
        "| a certified setting better than the default on every env | "
        f"{'yes' if lower_everywhere else 'no'} |"
    )
    gain, s, part = max(gains, key=lambda g: g[0])
    where = (
        f"at most {100 * gain:.1f}% ({part['env_id']} x{part['action_repeat']}, c_max "
        f"{s['c_max']}, {s['grad_mode']})"
        if gain >= 5e-4  # shown to one decimal of a percent
        else "by 0.0% in every regime and setting: every model halts below training's cap"
    )
    rows.append(
        f"| 3. training for test-time depth (phantom against recurrent-depth) | a cap above "
        f"training's lowers the error {where} | ≥ 10% | {'yes' if gain >= 0.10 else 'no'} |"
    )
    warm = regime_report("warmstart")["results"]["summary"]
    cells, best = [], -1.0
    for match, m in warm.items():
        starts = m["starts"]
        top = max(starts, key=lambda k: starts[k]["spearman_iters_contact"]["mean"])
        best = max(best, starts[top]["spearman_iters_contact"]["mean"])
        cells.append(
            f"at {m['iters_mean']['mean']:.1f} iterations (the latent start's at tol {match}): "
            + ", ".join(f"{k} {pm(v['spearman_iters_contact'], 2)}" for k, v in starts.items())
        )
    rows.append(
        "| 4. where the loop spends its iterations (warm start) | Spearman(iterations, contact) "
        f"at equal mean iterations, {'; '.join(cells)} | ≥ 0.6 | "
        f"{'yes' if best >= 0.6 else 'no'} |"
    )
    agent = regime_report("agent")["results"]
    cells, met = [], True
    for env_id, models in agent.items():
        curves = {  # per model: per evaluation, the seeds' returns
            m: [
                [run["curve"][i]["return_mean"] for run in seeds.values()]
                for i in range(len(next(iter(seeds.values()))["curve"]))
            ]
            for m, seeds in models.items()
        }
        steps = [c["env_steps"] for c in next(iter(next(iter(models.values())).values()))["curve"]]
        cells.append(
            f"{env_id}, return at "
            + " / ".join(f"{n:,}" for n in steps)
            + " steps: "
            + "; ".join(
                f"{m} " + " / ".join(f"{sum(v) / len(v):.0f}" for v in values)
                for m, values in curves.items()
            )
        )
        if "loopwm" in curves and "gru" in curves:
            means = {m: [sum(v) / len(v) for v in curves[m]] for m in ("loopwm", "gru")}
            met &= all(a >= b for a, b in zip(means["loopwm"], means["gru"], strict=True))
    rows.append(
        f"| 5. the loop in the agent (3 seeds) | {'; '.join(cells)} | LoopWM ≥ GRU at every "
        f"evaluation of every task, better on one | {'not yet' if met else 'no'} "
        f"({len(agent)} task{'s' * (len(agent) > 1)} measured) |"
    )
    return "\n".join(rows)


def _named(items: list[str]) -> str:
    return f" ({', '.join(items)})" if items else ""


def regime_contraction_table() -> str:
    report = regime_report("contraction")
    k = report["settings"]["horizon"]
    rows = [
        f"| env | repeat | c_max | a_max | training | {k}-step MSE at the fixed point "
        "| iterations (tol 1e-3) | best cap's gain over the fixed point | gain of a cap above "
        "training's |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for part in report["results"].values():
        for s in part["summary"]:
            above = s["gain_above_train_cap"]
            rows.append(
                f"| {part['env_id']} | {part['action_repeat']} | {s['c_max']} | {s['a_max']} | "
                f"{s['grad_mode']} | {pm(s['fixed_point_mse_K'])} | "
                f"{pm(s['default_tol_iters'], 1)} | "
                f"{_percent(s['best_cap_gain_over_fixed_point'])} | "
                f"{_percent(above) if above else ''} |"
            )
    return "\n".join(rows)


def _percent(stat: dict) -> str:
    return f"{100 * stat['mean']:+.1f}% ± {100 * stat['std']:.1f}"


def regime_warmstart_table() -> str:
    report = regime_report("warmstart")["results"]
    rows = [
        "| iterations matched to the latent start's at | mean iterations | 1-step MSE there | "
        "warm start | Spearman(iterations, contact) | ROC AUC (contact) |",
        "|---|---|---|---|---|---|",
    ]
    for match, m in report["summary"].items():
        for start, s in m["starts"].items():
            rows.append(
                f"| tol {match} | {pm(m['iters_mean'], 2)} | {pm(m['mse_1step'], 4)} | {start} | "
                f"{pm(s['spearman_iters_contact'])} | {pm(s['auc_iters_contact'])} |"
            )
    return "\n".join(rows)


def regime_agent_table() -> str:
    report = regime_report("agent")["results"]
    rows = []
    for env_id, models in report.items():
        steps = [c["env_steps"] for c in next(iter(next(iter(models.values())).values()))["curve"]]
        rows += [
            f"| {env_id}: world model | "
            + " | ".join(f"return at {n:,}" for n in steps)
            + " | wall seconds | updates |",
            "|---|" + "---|" * (len(steps) + 2),
        ]
        for model, seeds in models.items():
            runs = list(seeds.values())
            cells = [
                _spread([r["curve"][i]["return_mean"] for r in runs]) for i in range(len(steps))
            ]
            wall = _spread([r["wall_seconds"] for r in runs], 0)
            updates = _spread([r["updates"] for r in runs], 0)
            rows.append(f"| {model} | " + " | ".join(cells) + f" | {wall} | {updates} |")
        rows.append("")
    return "\n".join(rows).rstrip()


TABLES = {
    "fit": fit_table,
    "throughput": throughput_table,
    "dyna": dyna_table,
    "dyna-halfcheetah": partial(dyna_table, ("dyna_sac_halfcheetah.json",)),
    "dyna-ensemble": partial(dyna_table, ("dyna_sac_ensemble_halt.json",)),
    "agent": agent_table,
    "stability": stability_table,
    "halting": halting_table,
    "gate": gate_table,
    "params:HalfCheetah-v5": partial(params_vs_error_table, "HalfCheetah-v5"),
    "ratio:HalfCheetah-v5": partial(matched_ratio_table, "HalfCheetah-v5"),
    "params:Hopper-v5": partial(params_vs_error_table, "Hopper-v5"),
    "ratio:Hopper-v5": partial(matched_ratio_table, "Hopper-v5"),
    "adaptive": adaptive_table,
    "speed": speed_table,
    "solve": solve_table,
    "solve-ab": solve_ab_table,
    "solve-ab-cartpole": partial(solve_ab_table, "solve_ab_cartpole"),
    "solve-ab-ratio": partial(solve_ab_table, "solve_ab_ratio"),
    "solve-ab-ratio-symlog": partial(solve_ab_table, "solve_ab_ratio_symlog"),
    "solve-ab-imagine64": partial(solve_ab_table, "solve_ab_imagine64"),
    "solve-ab-cartpole-reinforce": partial(solve_ab_table, "solve_ab_cartpole_reinforce"),
    "solve-ab-big": partial(solve_ab_table, "solve_ab_big"),
    "solve-ab-symlog": partial(solve_ab_table, "solve_ab_symlog"),
    "update-ab": update_ab_table,
    "update-ab-rerun": partial(update_ab_table, "update_ab_rerun"),
    "update-ab-threads2": partial(update_ab_table, "update_ab_threads2"),
    "update-ab-tanh": partial(update_ab_table, "update_ab_tanh"),
    "solve-ab-cartpole-symlog": partial(solve_ab_table, "solve_ab_cartpole_symlog"),
    "solve-ab-cartpole-gamma": partial(solve_ab_table, "solve_ab_cartpole_gamma"),
    "solve-ab-cartpole-horizon": partial(solve_ab_table, "solve_ab_cartpole_horizon"),
    "solve-ab-gamma997": partial(solve_ab_table, "solve_ab_gamma997"),
    "solve-ab-pendulum-gamma": partial(solve_ab_table, "solve_ab_pendulum_gamma"),
    "solve-ab-cheetah-gamma": partial(solve_ab_table, "solve_ab_cheetah_gamma"),
    "solve-ab-pixels-frames": partial(solve_ab_table, "solve_ab_pixels_frames"),
    "solve-ab-decoder-free": partial(solve_ab_table, "solve_ab_decoder_free"),
    "solve-ab-pixels-decoder-free": partial(solve_ab_table, "solve_ab_pixels_decoder_free"),
    "solve-ab-horizon8": partial(solve_ab_table, "solve_ab_horizon8"),
    "speed-machine": speed_machine,
    "calibration": calibration_table,
    "uncertainty-cost": uncertainty_cost_table,
    "dream-sac": dream_sac_table,
    "dream-sac-shared-heads": partial(dream_sac_table, "uncertainty_shared_heads"),
    "dream-sac-short": dream_sac_short,
    "pixels": pixels_table,
    "dmc": dmc_table,
    "dream-honesty": dream_honesty_table,
    "op-costs": op_costs_table,
    "pixels-cost": pixels_cost_table,
    "regime-map": regime_map_table,
    "regime-depth": regime_depth_table,
    "regime-contraction": regime_contraction_table,
    "regime-warmstart": regime_warmstart_table,
    "regime-agent": regime_agent_table,
}
MARKER = re.compile(r"^<!-- table: (\S+) -->$", re.M)


def render(template: str) -> str:
    """The template with every ``<!-- table: NAME -->`` line replaced by that table."""

    def table(match: re.Match) -> str:
        name = match.group(1)
        if name not in TABLES:
            raise KeyError(f"{TEMPLATE.name}: no table called {name!r}")
        return TABLES[name]()

    header = (
        "<!-- Generated by `python benchmarks/tables.py` from benchmarks/results/*.json and "
        f"benchmarks/{TEMPLATE.name}; edit those, not this file. -->\n\n"
    )
    return header + MARKER.sub(table, template)


README_BLOCK = re.compile(r"^(<!-- table: (\S+) -->\n).*?^(<!-- end table -->)$", re.M | re.S)


def render_readme(readme: str) -> str:
    """The README with each marked block's table regenerated."""

    def table(match: re.Match) -> str:
        return f"{match.group(1)}{TABLES[match.group(2)]()}\n{match.group(3)}"

    return README_BLOCK.sub(table, readme)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if docs/results.md is not up to date"
    )
    args = parser.parse_args()
    outputs = {OUTPUT: render(TEMPLATE.read_text()), README: render_readme(README.read_text())}
    if args.check:
        stale = [p for p, text in outputs.items() if (p.read_text() if p.exists() else "") != text]
        for path in stale:
            print(f"{path} is out of date: run python benchmarks/tables.py")
        if not stale:
            print("docs/results.md and the README's tables are up to date")
        return 1 if stale else 0
    OUTPUT.parent.mkdir(exist_ok=True)
    for path, text in outputs.items():
        path.write_text(text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
