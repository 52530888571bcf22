"""Print the README's result tables (markdown) from benchmarks/results/*.json."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


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
        "| world model | parameters | envs (N) | imagined steps/s | × real env | loop iterations |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["dream"]:
        rows.append(
            f"| {r['preset']} | {r['parameters']:,} | {r['num_envs']} | "
            f"{r['steps_per_second']:,.0f} | {r['ratio_to_real_single_env']:.1f} | "
            f"{r['loop_iters_mean']:.1f} |"
        )
    rows.append(f"| real {report['env_id']} | | 1 | {real['single_env']:,.0f} | 1.0 | |")
    return "\n".join(rows)


def dyna_table() -> str:
    rows = [
        "| agent | return at 5k real steps | return at 10k real steps | wall seconds |",
        "|---|---|---|---|",
    ]
    for report in dyna_reports():
        rollouts = report["dyna_config"]["rollouts"]
        for variant, s in report["summary"].items():
            label = f"{variant} ({rollouts} rollouts/refit)" if "dyna" in variant else variant
            rows.append(
                f"| {label} | {pm(s['5000'], 1)} | {pm(s['10000'], 1)} | "
                f"{s['wall_seconds_mean']:.0f} |"
            )
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
            per_step = np.mean([r["wall_seconds"] / r["steps"] * 1000 for r in seeds.values()])
            stat = f"{np.mean(finals):.1f} ± {np.std(finals):.1f}"
            if len(finals) == 1:
                stat = f"{finals[0]:.1f} (1 seed)"
            per_seed = ", ".join(f"{v:.0f}" for v in finals)
            rows.append(
                f"| {env_id} | {variant} | {steps} | {stat} | {per_seed} | {per_step:.1f} | "
                f"{wall:.0f} |"
            )
    return "\n".join(rows)


def loop_behaviour_tables() -> str:
    report = json.loads((RESULTS / "loop_behaviour.json").read_text())
    rows = [
        "| model | max latent norm | NaN/inf rollouts | proven bound | seconds |",
        "|---|---|---|---|---|",
    ]
    for name, r in report["stability"].items():
        bound = f"{r['proven_bound']:.1f}" if "proven_bound" in r else "none"
        rows.append(
            f"| {name} | {r['latent_norm_max']:.1f} (start ≤ {r['start_norm_max']:.1f}) | "
            f"{r['nan_or_inf_fraction']:.1%} | {bound} | {r['seconds']:.0f} |"
        )
    rows += [
        "",
        "| seed | tol | mean iterations | 10-step MSE | fixed 32 iterations: MSE | saved |",
    ]
    rows.append("|---|---|---|---|---|---|")
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


def dyna_reports() -> list[dict]:
    """The SAC baselines' run, then the Dyna runs (one JSON per rollouts setting)."""
    names = ("dyna_sac.json", "dyna_sac_rollouts400.json", "dyna_sac_rollouts50.json")
    return [json.loads((RESULTS / n).read_text()) for n in names if (RESULTS / n).exists()]


if __name__ == "__main__":
    for title, table in (
        ("fit", fit_table),
        ("throughput", throughput_table),
        ("dyna", dyna_table),
        ("agent", agent_table),
        ("loop behaviour", loop_behaviour_tables),
    ):
        try:
            print(f"<!-- {title} -->\n{table()}\n")
        except FileNotFoundError as err:
            print(f"<!-- {title}: missing {err.filename} -->\n")
