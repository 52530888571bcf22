"""What every benchmark records about the machine it ran on.

Machines of one kind differ by 3x in speed: a figure in seconds is comparable only beside
the machine's single-thread float32 matmul rate, recorded with it.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time

import torch


def matmul_gflops(threads: int = 1, size: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of one float32 ``size``² matmul with ``threads`` torch threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(size, size), torch.randn(size, size)
        a @ b  # warm up
        started = time.perf_counter()
        for _ in range(repeats):
            a @ b
        seconds = (time.perf_counter() - started) / repeats
        return 2 * size**3 / seconds / 1e9
    finally:
        torch.set_num_threads(previous)


def machine_info() -> dict:
    """CPUs, torch threads, platform and the single-thread matmul rate."""
    return {
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "processor": platform.processor(),
        "matmul_gflops_1_thread": round(matmul_gflops(1), 1),
    }


def provenance() -> dict:
    """What every benchmark JSON opens with: the command, package versions and machine."""
    import sys
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for package in ("torch", "gymnasium", "stable_baselines3", "mujoco", "minatar"):
        try:
            versions[package] = version(package.replace("_", "-"))
        except PackageNotFoundError:
            continue
    return {
        "command": "python " + " ".join(sys.argv),
        "versions": versions,
        "machine": machine_info(),
    }


def run_side_by_side(commands: list[list[str]], jobs: int) -> int:
    """Run ``commands`` as processes, ``jobs`` at a time; at the first failure kill the
    others and return its exit code (0 when all succeed)."""
    pending, running = list(commands), []
    while pending or running:
        while pending and len(running) < jobs:
            running.append(subprocess.Popen(pending.pop(0)))
        time.sleep(1.0)
        for process in [p for p in running if p.poll() is not None]:
            running.remove(process)
            if process.returncode != 0:
                for other in running:
                    other.kill()
                return process.returncode
    return 0


if __name__ == "__main__":
    import json

    print(json.dumps(machine_info(), indent=2))
