"""Plots of benchmarks/results/*.json, written next to them as PNG files.

python benchmarks/plots.py
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tables import agent_runs, dyna_reports  # noqa: E402  (the script's own folder is on sys.path)

RESULTS = Path(__file__).parent / "results"
AGENT_COLORS = {"dreamer": "tab:blue", "dreamer-mppi": "tab:green", "sac": "tab:orange"}


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
    """Imagined steps/s against the number of batched envs, with the real env's rate."""
    report = json.loads((RESULTS / "dream_throughput.json").read_text())
    fig, ax = plt.subplots(figsize=(6, 4))
    for preset in dict.fromkeys(r["preset"] for r in report["dream"]):
        rows = [r for r in report["dream"] if r["preset"] == preset]
        ax.plot(
            [r["num_envs"] for r in rows],
            [r["steps_per_second"] for r in rows],
            "o-",
            label=f"DreamVectorEnv, {preset} model",
        )
    real = report["real_steps_per_second"]["single_env"]
    ax.axhline(real, color="0.3", ls="--", label=f"real {report['env_id']}")
    ax.axhline(100 * real, color="tab:red", ls=":", label="100x real (target)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("batched envs N")
    ax.set_ylabel("env steps / s")
    ax.legend(fontsize=7)
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
        ax.set_xlabel("real env steps")
        ax.set_ylabel("eval return (5 episodes)")
        ax.legend(fontsize=7)
    return _save(fig, "agent.png")


def _save(fig, name: str) -> Path:
    path = RESULTS / name
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


if __name__ == "__main__":
    for plot in (plot_fit, plot_throughput, plot_dyna, plot_agent):
        print(f"wrote {plot()}")
