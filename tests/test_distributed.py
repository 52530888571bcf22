"""torchrun + DistributedDataParallel world-model training on 2 CPU processes (gloo)."""

import json
import os
import subprocess
import sys

import numpy as np

from loopwm import load
from loopwm.config import FitConfig
from loopwm.fit import fit
from loopwm.replay import ReplayWriter

FIT_ARGS = [
    "--preset",
    "tiny",
    "--steps",
    "80",
    "--batch-size",
    "32",
    "--eval-horizon",
    "3",
    "--eval-every",
    "0",
    "--quiet",
]


def torchrun(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    # The collectives' timeout stays below the subprocess's, so a hang fails here, but
    # leaves room for rank 0's evaluation while rank 1 waits at the closing barrier: at
    # 30 s a rehearsal of CI beside a benchmark aborted there (gloo, SIGABRT).
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LOOPWM_DIST_TIMEOUT": "90"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    command += ["--standalone", "-m", "loopwm", "fit", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)


def test_two_processes_match_one_with_the_same_global_batch(pendulum_dir, tmp_path):
    out = tmp_path / "ddp"
    done = torchrun("--data", str(pendulum_dir), "--out", str(out), *FIT_ARGS)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("held-out open-loop MSE") == 1  # only rank 0 reports

    # Ranks > 0 wrote nothing: rank 0's files, one TensorBoard event file.
    assert sorted(p.name for p in out.iterdir()) == [
        "metrics.json",
        "model.safetensors",
        "tensorboard",
    ]
    assert len(list((out / "tensorboard").iterdir())) == 1
    ddp = json.loads((out / "metrics.json").read_text())
    assert ddp["world_size"] == 2 and ddp["backend"] == "gloo"

    cfg = FitConfig(steps=80, batch_size=32, eval_horizon=3, eval_every=0)
    _, single = fit(pendulum_dir, preset="tiny", config=cfg, progress=False)
    assert ddp["train_transitions"] == single["train_transitions"]  # shards cover the set
    assert ddp["heldout_episodes"] == single["heldout_episodes"]
    for key in ("obs_mse_1", "obs_mse_K"):
        np.testing.assert_allclose(ddp["heldout"][key], single["heldout"][key], rtol=0.3)
        assert ddp["heldout"][key] < 0.5 * single["heldout"][key.replace("obs", "copy")]

    model = load(out / "model.safetensors")  # a single-process load
    assert model.kind == "loopwm"


def test_more_processes_than_training_episodes_is_a_clear_error(tmp_path):
    data = tmp_path / "three_episodes"
    rng = np.random.default_rng(0)
    with ReplayWriter(data, obs_dim=4, action_dim=1) as writer:
        for t in range(30):  # 3 episodes: 2 for training, 1 held out
            obs = rng.normal(size=4)
            writer.add(obs, [0.0], 1.0, obs + 0.1, False, t % 10 == 9)
    args = [a if a != "32" else "30" for a in FIT_ARGS]  # a global batch of 30
    done = torchrun("--data", str(data), "--out", str(tmp_path / "out"), *args)
    assert done.returncode == 0, done.stderr[-2000:]  # 2 training episodes, 2 processes
    with ReplayWriter(tmp_path / "two", obs_dim=4, action_dim=1) as writer:
        for t in range(20):  # 2 episodes: 1 for training
            obs = rng.normal(size=4)
            writer.add(obs, [0.0], 1.0, obs + 0.1, False, t % 10 == 9)
    done = torchrun("--data", str(tmp_path / "two"), "--out", str(tmp_path / "out2"), *args)
    assert done.returncode != 0
    assert "1 training episodes cannot be shared by 2 processes" in done.stderr
    assert not (tmp_path / "out2").exists()


def test_distributed_without_torchrun_names_the_launcher(
    pendulum_dir, tmp_path, monkeypatch, capsys
):
    from loopwm.cli import main

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    code = main(
        ["fit", "--data", str(pendulum_dir), "--distributed", "--out", str(tmp_path), *FIT_ARGS]
    )
    assert code == 2
    assert "torchrun --nproc-per-node" in capsys.readouterr().err


def test_a_missing_peer_times_out_with_a_clear_error(pendulum_dir, tmp_path):
    import socket

    with socket.socket() as sock:  # a free port nobody else will join on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "RANK": "0",
        "WORLD_SIZE": "2",
        "LOCAL_RANK": "0",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "LOOPWM_DIST_TIMEOUT": "3",
        "OMP_NUM_THREADS": "1",
    }
    command = [sys.executable, "-m", "loopwm", "fit", "--data", str(pendulum_dir), *FIT_ARGS]
    done = subprocess.run(
        command + ["--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 2
    assert "could not join the process group" in done.stderr
    assert not (tmp_path / "out").exists()
