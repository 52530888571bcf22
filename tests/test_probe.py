"""A probe of bad inputs and faults through the command line: every one ends with exit
code 2 and a message that names the flag, file or space at fault, never a traceback."""

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from loopwm.checkpoint import read_header
from loopwm.cli import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A short finished `loopwm train` run (tiny preset)."""
    run = tmp_path_factory.mktemp("probe") / "run"
    command = (
        f"train --env InvertedPendulum-v5 --preset tiny --steps 250 --prefill 200 --pretrain 5 "
        f"--eval-every 250 --eval-episodes 1 --out {run} --quiet --no-video --no-tensorboard"
    )
    assert main(command.split()) == 0
    return run


@pytest.fixture(scope="module")
def bad(tmp_path_factory, pendulum_dir, pendulum_checkpoint, run_dir):
    """Files and folders each broken in one way."""
    root = tmp_path_factory.mktemp("bad")
    paths = {"data": pendulum_dir, "checkpoint": pendulum_checkpoint, "run": run_dir}
    paths["file"] = root / "a_file"
    paths["file"].write_text("not a folder")
    paths["empty"] = root / "empty"
    paths["empty"].mkdir()
    paths["pickle"] = root / "model.pkl"
    paths["pickle"].write_bytes(pickle.dumps({"weights": 1}))

    def dataset(name: str, edit) -> None:
        folder = root / name
        folder.mkdir()
        for path in pendulum_dir.iterdir():
            (folder / path.name).write_bytes(path.read_bytes())
        edit(folder)
        paths[name] = folder

    def random_bytes(folder):
        (folder / "chunk_000000.npz").write_bytes(np.random.default_rng(0).bytes(2000))

    def truncated(folder):
        chunk = folder / "chunk_000000.npz"
        chunk.write_bytes(chunk.read_bytes()[:500])

    def nan_reward(folder):
        chunk = folder / "chunk_000001.npz"
        with np.load(chunk) as data:
            arrays = {k: data[k] for k in data.files}
        arrays["reward"][3] = np.nan
        np.savez(chunk, **arrays)

    def wrong_width(folder):
        chunk = folder / "chunk_000001.npz"
        with np.load(chunk) as data:
            arrays = {k: data[k] for k in data.files}
        arrays["obs"] = arrays["obs"][:, :3]
        np.savez(chunk, **arrays)

    dataset("no_meta", lambda folder: (folder / "meta.json").unlink())
    dataset("random_chunk", random_bytes)
    dataset("truncated_chunk", truncated)
    dataset("nan_chunk", nan_reward)
    dataset("narrow_chunk", wrong_width)
    dataset("lost_chunk", lambda folder: (folder / "chunk_000001.npz").unlink())

    header = read_header(pendulum_checkpoint)
    tensors = load_file(str(pendulum_checkpoint))
    meta = {
        "format": "loopwm-checkpoint",
        "format_version": "2",
        "kind": "loopwm",
        "config": json.dumps(header["config"].to_dict()),
        "extra": json.dumps({"env_id": "InvertedPendulum-v5"}),
    }
    paths["list_extra"] = root / "list_extra.safetensors"
    save_file(tensors, str(paths["list_extra"]), metadata={**meta, "extra": "[1, 2]"})
    nan_tensors = {k: v.clone() for k, v in tensors.items()}
    nan_tensors["encoder.0.weight"][0, 0] = float("nan")
    paths["nan_weights"] = root / "nan_weights.safetensors"
    save_file(nan_tensors, str(paths["nan_weights"]), metadata=meta)
    paths["cheetah_env"] = root / "cheetah.safetensors"
    cheetah = {**meta, "extra": json.dumps({"env_id": "HalfCheetah-v5"})}
    save_file(tensors, str(paths["cheetah_env"]), metadata=cheetah)

    for name, edit in (
        ("corrupt_agent", lambda path: path.write_bytes(path.read_bytes()[:1000])),
        ("no_counters", None),
    ):
        copy = root / name
        copy.mkdir()
        for path in run_dir.iterdir():
            if path.is_file():
                (copy / path.name).write_bytes(path.read_bytes())
        (copy / "replay").symlink_to(run_dir / "replay")
        if edit is not None:
            edit(copy / "agent.pt")
        else:
            payload = torch.load(copy / "agent.pt", weights_only=True)
            del payload["counters"]
            torch.save(payload, copy / "agent.pt")
        paths[name] = copy
    return paths


def probe(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's errors
        code = exit_.code
    return code, capsys.readouterr().err


CASES = [
    # collect
    ("collect --env NoSuchEnv-v9 --steps 10 --out {tmp}/c", "cannot make environment"),
    ("collect --env Blackjack-v1 --steps 10 --out {tmp}/c", "flat Box observation"),
    ("collect --env InvertedPendulum-v5 --steps 0 --out {tmp}/c", "steps must be a positive"),
    ("collect --env InvertedPendulum-v5 --steps -5 --out {tmp}/c", "steps must be a positive"),
    ("collect --env InvertedPendulum-v5 --steps ten --out {tmp}/c", "--steps"),
    ("collect --env InvertedPendulum-v5 --steps 10 --out {file}", "is a file, not a folder"),
    ("collect --env InvertedPendulum-v5 --steps 10 --out {data}", "already holds a dataset"),
    (
        "collect --env InvertedPendulum-v5 --steps 10 --out {tmp}/c --policy {tmp}/x.zip",
        "--trust-policy",
    ),
    (
        "collect --env InvertedPendulum-v5 --steps 10 --out {tmp}/c --policy {tmp}/x.zip "
        "--trust-policy",
        "no SB3 model",
    ),
    ("collect --env InvertedPendulum-v5 --steps 10 --out {tmp}/c --chunk-size 0", "chunk_size"),
    ("collect --env InvertedPendulum-v5 --steps 10 --out {no_meta}", "no meta.json"),
    # fit: data
    ("fit --data {tmp}/none", "no loopwm dataset"),
    ("fit --data {empty}", "no loopwm dataset"),
    ("fit --data {file}", "no loopwm dataset"),
    ("fit --data {no_meta}", "no loopwm dataset"),
    ("fit --data {random_chunk}", "not a numpy .npz archive"),
    ("fit --data {truncated_chunk}", "corrupt dataset chunk"),
    ("fit --data {nan_chunk}", "reward holds NaN"),
    ("fit --data {narrow_chunk}", "obs has shape"),
    ("fit --data {lost_chunk}", "chunk_000001.npz"),
    # fit: settings
    ("fit --data {data} --steps 0", "steps must be a positive"),
    ("fit --data {data} --steps 1e20", "--steps"),
    ("fit --data {data} --batch-size 0", "batch_size must be a positive"),
    ("fit --data {data} --lr -1", "lr must be a positive"),
    ("fit --data {data} --preset tiny --horizon 100000 --out {tmp}/f", "longest training episode"),
    ("fit --data {data} --eval-horizon 0", "eval_horizon must be a positive"),
    ("fit --data {data} --holdout-fraction 1.5", "holdout_fraction"),
    ('fit --data {data} --loss-weights {{"x":1}}', "unknown loss_weights"),
    ("fit --data {data} --model transformer", "--model"),
    ("fit --data {data} --preset huge", "--preset"),
    ("fit --data {data} --wm.c-max 1.5", "a_max < c_max < 1"),
    ("fit --data {data} --set obs_dim=7", "come from the env"),
    ("fit --data {data} --set no_such_field=1", "no world model has"),
    ("fit --data {data} --set c_max", "--set expects KEY=VALUE"),
    ("fit --data {data} --wm.mlp-depth 3", "mlp_depth"),
    ("fit --data {data} --wm.ensemble 0", "ensemble must be a positive"),
    ("fit --data {data} --out {file}", "is a file, not a folder"),
    ("fit --data {data} --out {checkpoint_dir}", "--force"),
    ("fit --data {data} --device cuda", "sees no CUDA"),
    ("fit --data {data} --device banana", "unknown device"),
    # train
    ("train --steps 10", "--env is required"),
    ("train --env NoSuchEnv-v9", "cannot make environment"),
    ("train --env dm_control/no_such-task-v0", "cannot make environment"),
    ("train --env Blackjack-v1 --out {tmp}/t", "flat Box observation"),
    ("train --env CartPole-v1 --planner mppi --out {tmp}/t", "planner samples continuous"),
    ("train --env InvertedPendulum-v5 --steps 0", "steps must be a positive"),
    ("train --env InvertedPendulum-v5 --train-ratio 0", "train_ratio must be a positive"),
    ("train --env InvertedPendulum-v5 --prefill 0", "prefill must be >= 1"),
    ("train --env InvertedPendulum-v5 --eval-episodes 0", "eval_episodes must be a positive"),
    ("train --env InvertedPendulum-v5 --agent.gamma 2", "gamma must be in (0, 1]"),
    ("train --env InvertedPendulum-v5 --agent.model-fit.batch-size 0", "batch_size"),
    ("train --env InvertedPendulum-v5 --planner bogus", "--planner"),
    ("train --env InvertedPendulum-v5 --num-envs 0", "num_envs must be a positive"),
    ("train --env InvertedPendulum-v5 --action-repeat 0", "action_repeat must be a positive"),
    ("train --env InvertedPendulum-v5 --num-envs -2", "num_envs must be a positive"),
    ("train --env InvertedPendulum-v5 --num-envs 1.5", "--num-envs"),
    ("train --env InvertedPendulum-v5 --num-envs 3", "multiple of num_envs (3)"),
    ("train --resume {run} --num-envs 2", "cannot change num_envs"),
    ("train --env InvertedPendulum-v5 --out {file}", "is a file, not a folder"),
    ("train --env InvertedPendulum-v5 --out {run}", "already holds a run"),
    ("train --resume {tmp}/none", "not a loopwm run"),
    ("train --resume {run} --out {tmp}/t", "drop --out"),
    ("train --resume {run} --prefill 300", "cannot change prefill"),
    ("train --resume {run} --env HalfCheetah-v5", "cannot resume it on"),
    ("train --resume {run} --steps 100", "already taken 250 real steps"),
    ("train --resume {run} --wm.c-max 0.8", "cannot change agent.model_overrides"),
    (
        "train --env InvertedPendulum-v5 --agent.uncertainty-penalty 1 --out {tmp}/u",
        "needs an ensemble",
    ),
    ("train --resume {corrupt_agent}", "not a readable loopwm agent checkpoint"),
    ("train --resume {no_counters}", "without counters"),
    # eval
    ("eval --run {tmp}/none", "not a loopwm run"),
    ("eval --run {run} --episodes 0", "episodes must be a positive"),
    ("eval --run {corrupt_agent}", "not a readable loopwm agent checkpoint"),
    ("eval --run {no_counters}", "without counters"),
    # dream
    ("dream --checkpoint {tmp}/none.safetensors", "no checkpoint at"),
    ("dream --checkpoint {pickle}", "never unpickles"),
    ("dream --checkpoint {checkpoint} --steps 0", "steps must be a positive"),
    ("dream --checkpoint {checkpoint} --eval-episodes 0", "eval_episodes must be a positive"),
    ("dream --checkpoint {checkpoint} --env HalfCheetah-v5", "the model was fitted on"),
    ("dream --checkpoint {checkpoint} --start-states {tmp}/none", "no loopwm dataset"),
    ("dream --checkpoint {list_extra}", "extra must be a JSON object"),
    ("dream --checkpoint {nan_weights}", "non-finite"),
    ("dream --checkpoint {checkpoint} --algo dqn", "choose --algo from"),
    ("dream --checkpoint {checkpoint} --uncertainty-penalty 1", "needs an ensemble world model"),
    ("dream --checkpoint {checkpoint} --uncertainty-penalty -1", "uncertainty_penalty must be"),
    ("dream --checkpoint {checkpoint} --uncertainty-limit 0", "uncertainty_limit must be"),
    ("dream --checkpoint {checkpoint} --algo nope", "--algo"),
    # video
    ("video --out {tmp}/v.mp4", "give --checkpoint"),
    ("video --checkpoint {checkpoint} --size 0 --out {tmp}/v.mp4", "--size must be a positive"),
    ("video --checkpoint {checkpoint} --fps 0 --out {tmp}/v.mp4", "--fps must be a positive"),
    ("video --checkpoint {checkpoint} --steps 0 --out {tmp}/v.mp4", "--steps must be a positive"),
    ("video --checkpoint {cheetah_env} --out {tmp}/v.mp4", "a model of another env"),
    ("video --checkpoint {pickle} --out {tmp}/v.mp4", "never unpickles"),
    ("video --run {run} --policy {tmp}/x.zip --out {tmp}/v.mp4", "drop --policy or --run"),
    ("video --checkpoint {checkpoint} --policy {tmp}/x.zip --out {tmp}/v.mp4", "--trust-policy"),
    ("video --checkpoint {checkpoint} --env Pendulum-v1 --out {tmp}/v.mp4", "cannot render"),
    # bench
    ("bench no_such_benchmark --quick", "no_such_benchmark"),
]


@pytest.mark.parametrize(("command", "expected"), CASES, ids=[c for c, _ in CASES])
def test_bad_input_is_one_clear_error(command, expected, bad, tmp_path, capsys):
    names = {k: str(v) for k, v in bad.items()}
    names["checkpoint_dir"] = str(bad["checkpoint"].parent)
    argv = command.format(tmp=tmp_path, **names).split() + ["--quiet"] * (
        command.split()[0] in ("collect", "fit", "train", "dream")
    )
    code, err = probe(argv, capsys)
    assert code == 2, err
    assert "Traceback" not in err
    assert expected in err, err
    assert len(err.strip().splitlines()) == 1, err


def test_the_probe_is_large_enough_and_the_readme_counts_it():
    assert len(CASES) >= 60
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert f"runs {len(CASES)} bad inputs" in readme
