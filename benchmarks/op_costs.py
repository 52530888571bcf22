"""What the agent's small operations cost on this CPU, and what torch.compile buys them.

Two questions the update profile raised (``benchmarks/update_profile.py``):

- **tanh**: the block's activation, applied once per loop iteration. torch's CPU tanh is
  timed against its sigmoid and against ``2 sigmoid(2x) - 1``, the form the loop uses
  where no gradient is recorded (``loopwm.networks.tanh``), at the shapes the agent
  iterates on: (B, block_hidden) for one model, (K, B, block_hidden) for an ensemble.
- **torch.compile**: forward + backward of the actor's MLP on the latents of one
  imagined batch (128 x 15), eager against ``torch.compile`` (inductor), with the time
  the compilation itself took (cold: inductor's caches in a new folder).

Every figure is the median of ``--repeats`` timings of ``--calls`` calls, in one
process with ``--threads`` torch threads.

    python benchmarks/op_costs.py                 # writes results/op_costs.json
    python benchmarks/op_costs.py --quick         # smoke run, writes nothing
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from machine import provenance

from loopwm.networks import mlp, tanh

RESULTS = Path(__file__).parent / "results" / "op_costs.json"
SHAPES = [(128, 128), (256, 128), (5, 256, 128), (1920, 128)]


def timed(fn, calls: int, repeats: int) -> float:
    """Median microseconds per call of ``fn()``."""
    for _ in range(3):
        fn()
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        runs.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(runs)


def tanh_costs(calls: int, repeats: int) -> list[dict]:
    rows = []
    for shape in SHAPES:
        x = torch.randn(shape)
        with torch.no_grad():
            row = {
                "shape": list(shape),
                "us_torch_tanh": timed(lambda x=x: torch.tanh(x), calls, repeats),
                "us_sigmoid": timed(lambda x=x: torch.sigmoid(x), calls, repeats),
                "us_loop_tanh": timed(lambda x=x: tanh(x), calls, repeats),
            }
        row["ratio"] = row["us_loop_tanh"] / row["us_torch_tanh"]
        rows.append(row)
        print(f"tanh {shape}: {row['us_torch_tanh']:.1f} -> {row['us_loop_tanh']:.1f} us")
    return rows


def compile_costs(calls: int, repeats: int) -> dict:
    torch.manual_seed(0)
    net = mlp(64, 128, 2)  # the actor's MLP on a 64-dim latent
    x = torch.randn(128 * 15, 64, requires_grad=True)

    def step(f):
        return lambda: f(x).sum().backward()

    eager = timed(step(net), calls, repeats)
    # a cold compile, as a new run pays it: inductor's on-disk caches in a new folder
    previous = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    with tempfile.TemporaryDirectory(prefix="loopwm-inductor-") as cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
        try:
            started = time.perf_counter()
            compiled = torch.compile(net)
            compiled(x).sum().backward()  # compiles forward and backward
            compile_seconds = time.perf_counter() - started
            compiled_us = timed(step(compiled), calls, repeats)
        finally:
            if previous is None:
                os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
            else:
                os.environ["TORCHINDUCTOR_CACHE_DIR"] = previous
    result = {
        "batch": list(x.shape),
        "us_eager": eager,
        "us_compiled": compiled_us,
        "compile_seconds": compile_seconds,
    }
    result["ratio"] = result["us_compiled"] / result["us_eager"]
    print(
        f"actor MLP forward+backward: eager {eager:.0f} us, compiled "
        f"{result['us_compiled']:.0f} us, compiling took {compile_seconds:.1f} s"
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--quick", action="store_true", help="smoke run, writes nothing")
    args = parser.parse_args()
    if args.quick:
        args.calls, args.repeats, args.no_compile = 5, 1, True
    torch.set_num_threads(args.threads)
    results = {**provenance(), "tanh": tanh_costs(args.calls, args.repeats)}
    if not args.no_compile:
        results["compile"] = compile_costs(max(1, args.calls // 10), args.repeats)
    if not args.quick:
        args.out.write_text(json.dumps(results, indent=2))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
