"""Plots of benchmarks/results/*.json, written next to them as PNG files.

python benchmarks/plots.py
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tables import agent_runs, dyna_reports, regime_report  # noqa: E402  (the script's own folder is on sys.path)

RESULTS = Path(__file__).parent / "results"
AGENT_COLORS = {
    "dreamer": "tab:blue",
    "dreamer-mppi": "tab:green",
    "sac": "tab:orange",
    "dqn": "tab:red",
    "ppo": "tab:purple",
}


def plot_fit() -> Path:
    """Held-out 10-step error against parameter count, one point per model (mean ± std)."""
    report = json.loads((RESULTS / "fit_baselines.json").read_text())
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, s in report["summary"].items():
        ax.errorbar(
            s["parameters"],
            s["obs_mse_K"]["mean"],
            yerr=s["obs_mse_K"]["std"],
            fmt="o",
            capsize=3,
            label=name,
        )
    copy = next(iter(report["summary"].values()))["copy_mse_K"]["mean"]
    ax.axhline(copy, color="0.5", ls="--", lw=1, label="copy last observation")
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel(f"held-out {report['fit']['eval_horizon']}-step MSE")
    ax.set_title(f"{report['data']['env_id']}: error vs parameters ({len(report['seeds'])} seeds)")
    ax.legend(fontsize=7)
    return _save(fig, "fit_baselines.png")


def plot_throughput() -> Path:
    """Imagined steps/s against the number of batched envs, with the real env's rate; the
    model's FLOP/s as a fraction of the same matmuls run bare."""
    report = json.loads((RESULTS / "dream_throughput.json").read_text())
    fig, (ax, frac) = plt.subplots(1, 2, figsize=(11, 4))
    for preset in dict.fromkeys(r["preset"] for r in report["dream"]):
        rows = [r for r in report["dream"] if r["preset"] == preset]
        sizes = [r["num_envs"] for r in rows]
        label = f"DreamVectorEnv, {preset} model"
        ax.plot(sizes, [r["steps_per_second"] for r in rows], "o-", label=label)
        frac.plot(sizes, [r["flops_fraction"] for r in rows], "o-", label=f"{preset} model")
    real = report["real_steps_per_second"]["single_env"]
    ax.axhline(real, color="0.3", ls="--", label=f"real {report['env_id']}")
    ax.axhline(100 * real, color="tab:red", ls=":", label="100x real (target)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("batched envs N")
    ax.set_ylabel("env steps / s")
    ax.legend(fontsize=7)
    frac.axhline(0.5, color="tab:red", ls=":", label="50% (target)")
    frac.set_xscale("log")
    frac.set_ylim(0, 1)
    frac.set_xlabel("batched envs N")
    frac.set_ylabel("model FLOP/s / same matmuls bare")
    frac.legend(fontsize=7)
    return _save(fig, "dream_throughput.png")


def plot_dyna() -> Path:
    """Real-env return at 5k and 10k real steps for each SAC variant (mean ± std)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for report in dyna_reports():
        for variant, s in report["summary"].items():
            label = variant
            if "dyna" in variant:
                label += f" ({report['dyna_config']['rollouts']} rollouts/refit)"
            steps = [5000, 10000]
            ax.errorbar(
                steps,
                [s[str(k)]["mean"] for k in steps],
                yerr=[s[str(k)]["std"] for k in steps],
                marker="o",
                capsize=3,
                label=label,
            )
    ax.set_xlabel("real env steps")
    ax.set_ylabel("real-env return (10 episodes)")
    ax.set_title("InvertedPendulum-v5, 3 seeds")
    ax.legend(fontsize=7)
    return _save(fig, "dyna_sac.png")


def plot_agent() -> Path:
    """Learning curves: real-env return against real steps, mean ± std over seeds."""
    import numpy as np

    from loopwm.envs import default_action_repeat

    runs = agent_runs()
    fig, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 4), squeeze=False)
    for ax, (env_id, variants) in zip(axes[0], runs.items(), strict=True):
        for variant, seeds in variants.items():
            curves = [
                {p["env_steps"]: p["return_mean"] for p in r["curve"]} for r in seeds.values()
            ]
            steps = sorted(set.intersection(*(set(c) for c in curves)))
            values = np.array([[c[k] for k in steps] for c in curves])  # (seeds, points)
            mean, std = values.mean(0), values.std(0)
            color = AGENT_COLORS.get(variant)
            ax.plot(steps, mean, "o-", color=color, label=f"{variant} ({len(curves)} seeds)")
            ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.2)
        ax.set_title(env_id)
        # DMC runs count agent steps, each action repeated (TD-MPC2's convention)
        repeat = default_action_repeat(env_id)
        ax.set_xlabel(f"agent steps ({repeat} env steps each)" if repeat > 1 else "real env steps")
        ax.xaxis.set_major_formatter(lambda x, _: f"{x / 1000:g}k")  # 50k, not 50000
        ax.set_ylabel("eval return (5 episodes)")
        ax.legend(fontsize=7)
    return _save(fig, "agent.png")


def plot_loop_behaviour() -> Path:
    """Halting (error vs iterations), error vs test-time cap, and rollout stability."""
    report = json.loads((RESULTS / "loop_behaviour.json").read_text())
    fig, (halt, cap, stab) = plt.subplots(1, 3, figsize=(15, 4))
    for i, (seed, r) in enumerate(report["loopwm"].items()):
        alpha = 1.0 if i == 0 else 0.4
        certified, fixed = r["halting"]["certified"], r["halting"]["fixed"]
        halt.plot(
            [c["iters_mean"] for c in certified],
            [c["mse_K"] for c in certified],
            "o-",
            color="tab:blue",
            alpha=alpha,
            zorder=3,
            label="LoopWM, certified halting (tol sweep)" if i == 0 else None,
        )
        halt.plot(
            [c["iters_mean"] for c in fixed],
            [c["mse_K"] for c in fixed],
            "s--",
            color="tab:orange",
            alpha=alpha,
            label="LoopWM, fixed iteration count" if i == 0 else None,
        )
        cap.plot(
            [c["cap"] for c in r["test_time"]],
            [c["mse_K"] for c in r["test_time"]],
            "o-",
            alpha=alpha,
            label=f"LoopWM seed {seed}",
        )
    for i, gate in enumerate(report["gate"].values()):
        halt.plot(
            [g["iters_mean"] for g in gate],
            [g["mse_K"] for g in gate],
            "^:",
            color="tab:green",
            alpha=1.0 if i == 0 else 0.4,
            label="paper's gate (threshold sweep)" if i == 0 else None,
        )
    halt.set_xscale("log")
    halt.set_xlabel("mean loop iterations per transition")
    halt.set_ylabel("held-out 10-step MSE")
    halt.set_title("halting: computation vs error (3 seeds)")
    halt.legend(fontsize=7)
    cap.set_xscale("log", base=2)
    cap.set_xlabel("test-time iteration cap")
    cap.set_ylabel("held-out 10-step MSE")
    halted = next(iter(report["loopwm"].values()))["test_time"][-1]["iters_mean"]
    cap.set_title(f"test-time iteration cap (uncapped, halting stops at {halted:.1f})")
    cap.legend(fontsize=7)
    names = list(report["stability"])
    for i, name in enumerate(names):
        runs = list(report["stability"][name].values())
        norms = [r["latent_norm_max"] for r in runs]
        stab.bar(i, max(norms), color="tab:blue", label="max latent norm" if i == 0 else None)
        stab.scatter(
            [i] * len(runs),
            [r["start_norm_max"] for r in runs],
            color="k",
            zorder=3,
            label="max start norm (per seed)" if i == 0 else None,
        )
        bounds = [r["proven_bound"] for r in runs if "proven_bound" in r]
        if bounds:
            stab.hlines(max(bounds), i - 0.4, i + 0.4, color="tab:red", label="proven bound")
        broken = max(r["nan_or_inf_fraction"] for r in runs)
        if broken > 0:
            stab.annotate(f"{broken:.0%} NaN", (i, max(norms)))
    x = range(len(names))
    stab.set_xticks(list(x), names)
    stab.set_ylabel("latent L2 norm")
    stab.set_title("stability: 1,000 starts x 10,000 steps, worst seed")
    stab.legend(fontsize=7)
    return _save(fig, "loop_behaviour.png")


def plot_params_vs_error() -> Path:
    """Held-out 50-step error against parameters (top) and FLOPs per transition (bottom)."""
    report = json.loads((RESULTS / "params_vs_error.json").read_text())
    envs = report["envs"]
    k = report["fit"]["eval_horizon"]
    fig, axes = plt.subplots(2, len(envs), figsize=(6 * len(envs), 8), squeeze=False)
    for col, (env_id, part) in enumerate(envs.items()):
        copy = sum(r["copy_mse_K"] for r in part["runs"]) / len(part["runs"])
        for row, (key, label) in enumerate(
            (("parameters", "parameters"), ("flops", "matmul FLOPs per transition"))
        ):
            ax = axes[row][col]
            for family, entries in part["table"].items():
                xs = [
                    e["parameters"] if key == "parameters" else e["flops_per_transition"]["mean"]
                    for e in entries
                ]
                ax.errorbar(
                    xs,
                    [e["mse_K"]["mean"] for e in entries],
                    yerr=[e["mse_K"]["std"] for e in entries],
                    marker="o",
                    capsize=3,
                    label=family,
                )
            ax.axhline(copy, color="0.5", ls="--", lw=1, label="copy last observation")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel(label)
            ax.set_ylabel(f"held-out {k}-step MSE")
            ax.set_title(f"{env_id} ({len(report['seeds'])} seeds)")
            ax.legend(fontsize=7)
    return _save(fig, "params_vs_error.png")


def plot_uncertainty() -> Path:
    """Calibration: held-out 1-step error per decile of the ensemble's u, per env and seed;
    and the returns of SAC trained only in the dream, per variant."""
    from tables import DREAM_VARIANTS

    report = json.loads((RESULTS / "uncertainty.json").read_text())
    fig, (cal, ret) = plt.subplots(1, 2, figsize=(11, 4))
    for (env_id, seeds), color in zip(
        report["calibration"].items(), ("tab:blue", "tab:orange", "tab:green"), strict=False
    ):
        for i, record in enumerate(seeds.values()):
            bins = record["ensemble"]["deciles"]
            cal.plot(
                [b["u_mean"] for b in bins],
                [b["error_mean"] for b in bins],
                "o-",
                color=color,
                alpha=0.8,
                label=env_id if i == 0 else None,
            )
    cal.set_xscale("log")
    cal.set_yscale("log")
    cal.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    cal.set_xlabel("ensemble disagreement u (decile mean)")
    cal.set_ylabel("held-out 1-step MSE (decile mean)")
    cal.set_title("calibration of u")
    cal.legend(fontsize=7)
    runs = report["dream"].values()
    names = [v for v in DREAM_VARIANTS if all(v in seed for seed in runs)]
    for offset, (key, label) in enumerate(
        (
            ("dream_return", "in its dream"),
            ("dream_return_raw", "whole dream episodes, no penalty"),
            ("real_return", "real env"),
        )
    ):
        values = [[seed[v][key][0] for seed in runs] for v in names]
        xs = [i + 0.27 * (offset - 1) for i in range(len(names))]
        ret.bar(xs, [sum(v) / len(v) for v in values], width=0.27, label=label)
        for x, seeds in zip(xs, values, strict=True):
            ret.plot([x] * len(seeds), seeds, "k.", ms=4)
    ret.set_xticks(range(len(names)), [n.replace("_", "\n+ ") for n in names])
    ret.set_ylabel("return (10 episodes; dots: seeds)")
    ret.set_title("SAC trained only in the dream, InvertedPendulum-v5")
    ret.legend(fontsize=7)
    return _save(fig, "uncertainty.png")


def plot_regimes() -> Path:
    """Left: 50-step error against action repeat per family (largest width), per env.
    Right: 50-step error against the test-time iteration cap per contraction setting."""
    depth, contraction = regime_report("depth"), regime_report("contraction")
    envs = sorted({p["env_id"] for p in depth["results"].values()})
    fig, axes = plt.subplots(1, len(envs) + 1, figsize=(5 * (len(envs) + 1), 4))
    for ax, env_id in zip(axes, envs, strict=False):
        parts = sorted(
            (p for p in depth["results"].values() if p["env_id"] == env_id),
            key=lambda p: p["action_repeat"],
        )
        repeats = [p["action_repeat"] for p in parts]
        for family in parts[0]["table"]:
            last = [p["table"][family][-1] for p in parts]
            ax.errorbar(
                repeats,
                [e["mse_K"]["mean"] for e in last],
                yerr=[e["mse_K"]["std"] for e in last],
                marker="o",
                capsize=3,
                label=f"{family} (width {last[0]['width']})",
            )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("action repeat (env steps per transition)")
        ax.set_ylabel(f"held-out {depth['settings']['horizon']}-step MSE")
        ax.set_title(env_id)
        ax.legend(fontsize=7)
    ax = axes[-1]
    key = next(iter(contraction["results"]))
    part = contraction["results"][key]
    for s in part["summary"]:
        if s["a_max"] != min(0.5, s["c_max"] / 2):
            continue  # the a_max sweep: in the table
        caps = sorted(s["mse_K_by_cap"], key=int)
        ax.plot(
            [int(c) for c in caps],
            [s["mse_K_by_cap"][c]["mean"] for c in caps],
            marker="o",
            ls="-" if s["grad_mode"] == "phantom" else "--",
            label=f"c_max {s['c_max']} {s['grad_mode']}",
        )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("test-time iteration cap")
    ax.set_ylabel(f"held-out {contraction['settings']['horizon']}-step MSE")
    ax.set_title(f"{part['env_id']} x{part['action_repeat']}: error vs cap")
    ax.legend(fontsize=6)
    return _save(fig, "regimes.png")


def _save(fig, name: str) -> Path:
    path = RESULTS / name
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


if __name__ == "__main__":
    plots = (plot_fit, plot_throughput, plot_dyna, plot_agent, plot_loop_behaviour)
    for plot in (*plots, plot_params_vs_error, plot_uncertainty, plot_regimes):
        print(f"wrote {plot()}")
