"""Milliseconds per agent update of two commits, measured interleaved on this machine.

Each commit is installed (without dependencies) into its own folder under the system's
temporary directory, and every repeat runs one fresh process per commit in turn, so that
both see the same machine load: the machine drifts by more than most single changes
save. A process fills a replay with random real transitions, warms the agent up, then
times ``--updates`` world-model steps and actor-critic steps with ``--threads`` torch
threads (1 by default).

    python benchmarks/update_ab.py --revs 74ab238 HEAD        # before/after a change
    python benchmarks/update_ab.py --revs HEAD HEAD           # the noise: a commit against itself
    python benchmarks/update_ab.py --quick                    # HEAD against itself, writes nothing

The commits must both have ``DreamerAgent.trainer.train_step`` and
``DreamerAgent.update_actor_critic`` (every commit since the agent split them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from machine import provenance

RESULTS = Path(__file__).parent / "results" / "update_ab.json"
ROOT = Path(__file__).resolve().parents[1]

# Self-contained (it repeats update_profile.py's replay fill): it runs against another
# commit's install, with only that commit's loopwm importable.
CHILD = r"""
import json, sys, tempfile, time
from pathlib import Path
import torch
from loopwm.agents import DreamerAgent
from loopwm.envs import ActionCodec, ObsCodec, make_env
from loopwm.online_replay import OnlineReplay

env_id, updates, threads, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), 0
torch.set_num_threads(threads)
env = make_env(env_id)
agent = DreamerAgent(env.observation_space, env.action_space, seed=seed)
codec = ObsCodec(env.observation_space)
with tempfile.TemporaryDirectory() as folder:
    replay = OnlineReplay(
        Path(folder) / "replay", obs_dim=codec.dim,
        action_dim=ActionCodec(env.action_space).dim, obs_dtype=codec.storage_dtype,
    )
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    for _ in range(2000):
        action = env.action_space.sample()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        replay.add(obs, action, reward, next_obs, terminated, truncated)
        obs = env.reset()[0] if terminated or truncated else next_obs
    for _ in range(5):
        agent.update(replay)
    world_model = actor_critic = 0.0
    for _ in range(updates):
        started = time.perf_counter()
        agent.trainer.train_step(replay)
        middle = time.perf_counter()
        agent.update_actor_critic(replay)
        world_model += middle - started
        actor_critic += time.perf_counter() - middle
    replay.close()
print(json.dumps({"world_model_ms": 1e3 * world_model / updates,
                  "actor_critic_ms": 1e3 * actor_critic / updates}))
"""


def install(rev: str, root: Path) -> tuple[str, Path]:
    """Install commit ``rev`` into ``root``; returns its full hash and the folder to put on
    PYTHONPATH."""
    sha = subprocess.run(
        ["git", "rev-parse", rev], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    site = root / sha / "site"
    if not site.exists():  # installed whole or not at all: the rename is the last step
        root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=root))
        archive = subprocess.run(
            ["git", "archive", sha], cwd=ROOT, check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(work)], input=archive, check=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
             "--target", str(work / "site"), str(work)],
            check=True, capture_output=True, cwd=work,
        )  # fmt: skip
        site.parent.mkdir(exist_ok=True)
        (work / "site").rename(site)
        shutil.rmtree(work)
    return sha, site


def measure(site: Path, env_id: str, updates: int, threads: int) -> dict:
    # cwd outside the repository: `python -c` must import the installed commit, not ./loopwm
    env = dict(os.environ, PYTHONPATH=str(site), OMP_NUM_THREADS=str(threads))
    output = subprocess.run(
        [sys.executable, "-c", CHILD, env_id, str(updates), str(threads)],
        env=env, cwd=tempfile.gettempdir(), check=True, capture_output=True, text=True,
    )  # fmt: skip
    record = json.loads(output.stdout.strip().splitlines()[-1])
    record["ms_per_update"] = record["world_model_ms"] + record["actor_critic_ms"]
    return record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--revs", nargs=2, metavar="REV", help="two commits (git revisions)")
    parser.add_argument("--env", default="InvertedPendulum-v5")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--updates", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--quick", action="store_true", help="smoke run, writes nothing")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.updates = 1, 2
        args.revs = args.revs or ["HEAD", "HEAD"]
    if not args.revs:
        parser.error("--revs REV REV is required (e.g. --revs HEAD~1 HEAD)")
    root = Path(tempfile.gettempdir()) / "loopwm_update_ab"
    installed = [install(rev, root) for rev in args.revs]
    if args.revs[0] == args.revs[1]:  # a commit against itself: how large the noise is
        args.revs = [f"{args.revs[0]} (A)", f"{args.revs[1]} (B)"]
    runs: dict[str, list[dict]] = {rev: [] for rev in args.revs}
    for repeat in range(args.repeats):
        for rev, (_, site) in zip(args.revs, installed, strict=True):
            record = measure(site, args.env, args.updates, args.threads)
            runs[rev].append(record)
            print(
                f"repeat {repeat} {rev}: {record['ms_per_update']:.1f} ms per update "
                f"(world model {record['world_model_ms']:.1f}, "
                f"actor-critic {record['actor_critic_ms']:.1f})",
                flush=True,
            )
    medians = {
        rev: {k: statistics.median(r[k] for r in records) for k in records[0]}
        for rev, records in runs.items()
    }
    first, second = args.revs
    ratio = medians[second]["ms_per_update"] / medians[first]["ms_per_update"]
    print(f"median ms per update: {first} {medians[first]['ms_per_update']:.1f}, "
          f"{second} {medians[second]['ms_per_update']:.1f} ({ratio:.2f}x)")  # fmt: skip
    if not args.quick:
        report = {
            **provenance(),
            "env_id": args.env,
            "updates": args.updates,
            "commits": {rev: sha for rev, (sha, _) in zip(args.revs, installed, strict=True)},
            "runs": runs,
            "medians": medians,
            "ratio": ratio,
        }
        report["machine"]["torch_threads"] = args.threads
        args.out.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
