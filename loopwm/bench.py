"""``loopwm bench NAME``: run the benchmark scripts of a source checkout.

The scripts live in the repository's ``benchmarks/`` folder (they write
``benchmarks/results/NAME.json`` and are not installed with the package). ``bench`` finds
that folder next to the package sources or in the working directory and runs each script
in its own process, as ``python benchmarks/NAME.py [--quick] [ARGS...]``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm

from loopwm.checks import progress_disabled
from loopwm.errors import ConfigError, MissingError

HELPERS = {"tables", "plots", "machine"}  # scripts in benchmarks/ that are not benchmarks


def benchmarks_folder() -> Path:
    """The ``benchmarks/`` folder of the checkout loopwm runs from (or the cwd's)."""
    import loopwm

    candidates = [Path(loopwm.__file__).resolve().parent.parent / "benchmarks"]
    candidates.append(Path.cwd() / "benchmarks")
    for folder in candidates:
        if folder.is_dir() and any(folder.glob("*.py")):
            return folder
    raise MissingError(
        "loopwm bench runs the scripts in a source checkout's benchmarks/ folder, and none "
        "was found next to the package or in the current directory; clone the repository "
        "and run it from there"
    )


def available(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.py") if p.stem not in HELPERS)


def run_benchmarks(
    names: list[str], *, quick: bool, extra: list[str], progress: bool | None = None
) -> list[tuple[str, int, float]]:
    """Run benchmarks ``names`` (``["all"]`` for every one) one after another.

    Returns:
        ``(name, exit code, seconds)`` per benchmark; stops at the first failure.
    """
    folder = benchmarks_folder()
    known = available(folder)
    if names == ["all"]:
        names = known
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"unknown benchmark(s) {unknown}; choose from {known} or 'all'")
    if extra and len(names) > 1:
        raise ConfigError("extra arguments go to one benchmark at a time")
    results = []
    bar = tqdm(names, desc="bench", disable=progress_disabled(progress))
    for name in bar:
        bar.set_postfix_str(name)
        command = [sys.executable, str(folder / f"{name}.py"), *(["--quick"] if quick else [])]
        started = time.perf_counter()
        code = subprocess.run(command + extra, cwd=folder.parent).returncode
        results.append((name, code, time.perf_counter() - started))
        if code != 0:
            break
    bar.close()
    return results
