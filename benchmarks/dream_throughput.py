"""Imagined steps/s of DreamVectorEnv vs the real MuJoCo env's steps/s, in one run.

World models (presets ``default``, ``small`` and ``tiny``) are fitted briefly on random-policy
InvertedPendulum-v5 data so that their loop iteration counts are realistic; then both the
dream and the real env are stepped with uniformly random actions for a fixed time each.

FLOP/s: ten batched LoopWM transitions (``model.step`` on N latents, halting included; no
encoder or decoder) are timed and their matmul FLOPs counted (``torch.utils.flop_counter``);
then exactly the matmuls they ran (same shapes, strides and order, recorded on the way, on
as many distinct buffers as the model used) are replayed as plain ``torch.mm`` calls in the
same process. ``flops_fraction`` is the model's FLOP/s over the bare matmuls' FLOP/s: the
share of time the loop's matmuls get, the rest going to its bookkeeping (halting tests,
gathers, elementwise work, Python). One large 2048x2048 matmul gives the machine's peak for
scale; small batches cannot reach it, bare or not.

    python benchmarks/dream_throughput.py            # writes results/dream_throughput.json
    python benchmarks/dream_throughput.py --quick    # smoke run, writes nothing
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
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from loopwm.collect import collect
from loopwm.config import FitConfig
from loopwm.envs import DreamVectorEnv
from loopwm.fit import fit
from loopwm.replay import Replay

RESULTS = Path(__file__).parent / "results" / "dream_throughput.json"
ENV_ID = "InvertedPendulum-v5"


def timed_steps(step, seconds: float, batch: int) -> float:
    """Env steps per second of ``step()`` (which advances ``batch`` envs) over ``seconds``."""
    step()  # warm-up
    count, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        step()
        count += 1
    return count * batch / elapsed


def real_steps_per_second(seconds: float, num_envs: int) -> float:
    if num_envs == 1:
        env = gym.make(ENV_ID)
        env.reset(seed=0)
        env.action_space.seed(0)

        def step():
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                env.reset()

        return timed_steps(step, seconds, 1)
    envs = gym.vector.SyncVectorEnv([lambda: gym.make(ENV_ID) for _ in range(num_envs)])
    envs.reset(seed=0)
    envs.action_space.seed(0)
    return timed_steps(lambda: envs.step(envs.action_space.sample()), seconds, num_envs)


class RecordMatmuls(TorchDispatchMode):
    """Records the operands (shape, strides, storage address) of every matmul dispatched
    inside the ``with`` block, so the same matmuls can be replayed on the same number of
    distinct buffers (weights reused from cache as the model reuses them)."""

    OPS = {torch.ops.aten.mm.default: (0, 1), torch.ops.aten.addmm.default: (1, 2)}
    UNSUPPORTED = {torch.ops.aten.bmm.default, torch.ops.aten.baddbmm.default}

    def __init__(self) -> None:
        super().__init__()
        self.operands: list[tuple[tuple, tuple]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in self.OPS:
            i, j = self.OPS[func]
            self.operands.append(tuple(_operand(args[k]) for k in (i, j)))
        elif func in self.UNSUPPORTED:
            raise NotImplementedError(f"{func} is not replayed; extend RecordMatmuls")
        return func(*args, **(kwargs or {}))

    def flops(self) -> int:
        return sum(2 * a[0][0] * a[0][1] * b[0][1] for a, b in self.operands)

    def replay_operands(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        buffers: dict[tuple, torch.Tensor] = {}

        def buffer(key):
            if key not in buffers:
                shape, stride, _ = key
                buffers[key] = torch.empty_strided(shape, stride).normal_()
            return buffers[key]

        return [(buffer(a), buffer(b)) for a, b in self.operands]


def _operand(t: torch.Tensor) -> tuple:
    return tuple(t.shape), tuple(t.stride()), t.data_ptr()


def peak_matmul_flops(repeats: int) -> float:
    """FLOP/s of one large square matmul: what the machine's torch build can reach."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    return 2 * 2048**3 / best_seconds([lambda: torch.mm(a, b)], repeats)[0]


def best_seconds(runs: list, repeats: int) -> list[float]:
    """Fastest of ``repeats`` timed calls of each of ``runs``, interleaved so that load on
    the shared machine hits all of them alike; one warm-up call each first."""
    for run in runs:
        run()
    best = [float("inf")] * len(runs)
    for _ in range(repeats):
        for i, run in enumerate(runs):
            started = time.perf_counter()
            run()
            best[i] = min(best[i], time.perf_counter() - started)
    return best


@torch.no_grad()
def flops_fraction(model, start_obs: np.ndarray, steps: int, repeats: int) -> dict:
    """FLOP/s of ``steps`` batched LoopWM transitions vs the same matmuls run bare."""
    model.eval()
    latent0 = model.encode(torch.as_tensor(start_obs, dtype=torch.float32))
    rng = np.random.default_rng(0)
    actions = torch.as_tensor(
        rng.uniform(-3, 3, size=(steps, len(start_obs), model.config.action_dim)),
        dtype=torch.float32,
    )

    def rollout():
        latent = latent0
        for action in actions:
            latent = model.step(latent, action).latent

    rollout()  # the block's effective weights are cached from here on
    with FlopCounterMode(display=False) as counter, RecordMatmuls() as recorder:
        rollout()
    flops = counter.get_total_flops()
    if recorder.flops() != flops:
        raise RuntimeError(f"recorded matmuls hold {recorder.flops()} FLOPs, counted {flops}")
    operands = recorder.replay_operands()

    def bare():
        for a, b in operands:
            torch.mm(a, b)

    model_seconds, bare_seconds = best_seconds([rollout, bare], repeats)
    return {
        "matmuls": len(operands),
        "flops_per_transition": flops / (steps * len(start_obs)),
        "model_flops_per_second": flops / model_seconds,
        "matmul_flops_per_second": flops / bare_seconds,
        "flops_fraction": bare_seconds / model_seconds,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--data", default="runs/bench/pendulum-20k")
    args = parser.parse_args()
    seconds = 0.5 if args.quick else 5.0
    sizes = [1, 64] if args.quick else [1, 64, 1024, 4096]
    presets = ["tiny"] if args.quick else ["default", "small", "tiny"]
    data = Path(args.data + ("-quick" if args.quick else ""))
    if not (data / "meta.json").exists():
        collect(ENV_ID, 2000 if args.quick else 20_000, data, seed=0, progress=False)

    start_obs = Replay.load(data).obs
    real = {n: real_steps_per_second(seconds, n) for n in (1, 16)}
    peak = peak_matmul_flops(3 if args.quick else 10)
    print(f"one 2048x2048 matmul: {peak / 1e9:.1f} GFLOP/s")
    print(f"real {ENV_ID}: {real[1]:.0f} steps/s (1 env), {real[16]:.0f} (SyncVectorEnv x16)")
    rows = []
    for preset in presets:
        cfg = FitConfig(steps=20 if args.quick else 300, eval_horizon=5, eval_every=0)
        model, _ = fit(data, preset=preset, config=cfg, progress=False)
        for n in sizes:
            env = DreamVectorEnv(model, n, env_id=ENV_ID, start_states=data)
            env.reset(seed=0)
            rng = np.random.default_rng(0)
            actions = rng.uniform(-3, 3, size=(64, n, 1))
            iters = []

            def step(env=env, actions=actions, iters=iters):
                infos = env.step(actions[len(iters) % 64])[4]
                iters.append(float(infos["loop_iters"].mean()))

            rate = timed_steps(step, seconds, n)
            starts = start_obs[rng.integers(0, len(start_obs), size=n)]
            hardware = flops_fraction(model, starts, steps=10, repeats=2 if args.quick else 5)
            rows.append(
                {
                    **hardware,
                    "preset": preset,
                    "num_envs": n,
                    "parameters": model.num_parameters(),
                    "steps_per_second": rate,
                    "loop_iters_mean": float(np.mean(iters)),
                    "ratio_to_real_single_env": rate / real[1],
                }
            )
            print(
                f"dream {preset:8s} N={n:5d}: {rate:10.0f} steps/s "
                f"({rate / real[1]:6.1f}x real), {np.mean(iters):.1f} loop iters, "
                f"{hardware['model_flops_per_second'] / 1e9:.2f} GFLOP/s = "
                f"{hardware['flops_fraction']:.0%} of bare matmuls",
                flush=True,
            )
    report = {
        "command": "python benchmarks/dream_throughput.py" + (" --quick" if args.quick else ""),
        "env_id": ENV_ID,
        "seconds_per_measurement": seconds,
        "real_steps_per_second": {"single_env": real[1], "sync_vector_env_16": real[16]},
        "peak_matmul_flops_per_second": peak,
        "dream": rows,
        "target": ">= 100x the real env's steps/s at N = 4096; flops_fraction >= 0.5",
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "gymnasium": gym.__version__,
        },
        "machine": machine_info(),
        "date": time.strftime("%Y-%m-%d"),
    }
    if not args.quick:
        RESULTS.write_text(json.dumps(report, indent=2))
        print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
