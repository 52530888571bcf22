"""Smoke runs of every CLI verb, checking that real work happened."""

import json
import shlex
import subprocess
import sys

import numpy as np
import pytest
import torch

from loopwm import load
from loopwm.cli import main
from loopwm.replay import Replay

# `loopwm train` flags of an agent small enough for a test run
TINY_AGENT = (
    "--preset tiny --agent.horizon 3 --agent.model-fit.batch-size 8 --agent.imagine-batch 16"
)


def cli(command: str) -> int:
    return main(shlex.split(command))


def test_help_lists_verbs():
    out = subprocess.run(
        [sys.executable, "-m", "loopwm", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for verb in ("collect", "fit", "dream"):
        assert verb in out


def test_collect_then_fit(tmp_path, capsys):
    data = tmp_path / "data"
    assert cli(f"collect --env InvertedPendulum-v5 --steps 600 --out {data} --quiet") == 0
    assert len(Replay.load(data)) == 600
    out = tmp_path / "fit"
    command = f"fit --data {data} --preset tiny --steps 30 --eval-horizon 3 --out {out} --quiet"
    assert cli(command + " --set c_max=0.8") == 0
    printed = capsys.readouterr().out
    assert "copy last obs" in printed and "contraction bound" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["c_max"] == 0.8
    last = metrics["history"][-1]
    assert last["step"] == 30 and np.isfinite(last["wm/loss"])
    model = load(out / "model.safetensors")
    assert model.config.c_max == 0.8
    # a real update happened: the checkpoint differs from a fresh model with the same seed
    torch.manual_seed(0)
    fresh = type(model)(model.config)
    assert not torch.equal(fresh.encoder[0].weight, model.encoder[0].weight)


def test_cli_errors_are_clear(tmp_path, capsys):
    assert cli(f"collect --env Blackjack-v1 --steps 5 --out {tmp_path / 'x'} --quiet") == 2
    assert "flat Box observation" in capsys.readouterr().err
    assert main(["fit", "--data", str(tmp_path / "none"), "--quiet"]) == 2
    assert "no loopwm dataset" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["fit", "--data", "x", "--model", "transformer"])
    # --debug shows the traceback of an expected error; a bug always keeps its traceback
    with pytest.raises(FileNotFoundError, match="no loopwm dataset"):
        main(["--debug", "fit", "--data", str(tmp_path / "none"), "--quiet"])
    assert main(["train", "--env", "InvertedPendulum-v5", "--steps", "0", "--quiet"]) == 2
    assert "steps must be a positive int" in capsys.readouterr().err


def test_a_bug_keeps_its_traceback(monkeypatch):
    import loopwm.cli

    def broken(args):
        raise KeyError("a bug, not a user error")

    monkeypatch.setattr(loopwm.cli, "cmd_eval", broken)
    with pytest.raises(KeyError, match="a bug"):
        main(["eval", "--run", "somewhere"])


def test_collect_with_sb3_policy(tmp_path, capsys):
    from stable_baselines3 import PPO

    from loopwm.envs import make_env

    env = make_env("InvertedPendulum-v5")
    agent = PPO("MlpPolicy", env, n_steps=64, batch_size=32, n_epochs=1, seed=0)
    agent.learn(64)
    agent.save(tmp_path / "ppo.zip")
    env.close()
    data = tmp_path / "data"
    policy = f"--policy {tmp_path / 'ppo.zip'} --algo ppo --deterministic"
    command = f"collect --env InvertedPendulum-v5 --steps 50 --out {data} {policy} --quiet"
    assert cli(command) == 2  # an SB3 zip can run code when loaded: refused unless trusted
    assert "--trust-policy" in capsys.readouterr().err
    assert not data.exists()
    assert cli(command + " --trust-policy") == 0
    replay = Replay.load(data)
    assert replay.meta["policy"].startswith("sb3-ppo:")
    expected, _ = agent.predict(replay.obs[:5], deterministic=True)
    np.testing.assert_allclose(replay.action[:5], np.clip(expected, -3, 3), atol=1e-6)


def test_dream_trains_sb3_in_the_model_and_evaluates_on_the_real_env(
    pendulum_checkpoint, tmp_path, capsys
):
    out = tmp_path / "dream"
    command = f"dream --checkpoint {pendulum_checkpoint} --algo ppo --steps 128 --eval-episodes 2"
    assert cli(f"{command} --out {out} --quiet") == 0
    printed = capsys.readouterr().out
    assert "return on the real env" in printed
    assert "the model along the agent's real episodes:\n  " in printed
    assert "real transitions\n  1-step error" in printed
    result = json.loads((out / "dream.json").read_text())
    assert result["env_id"] == "InvertedPendulum-v5" and result["dream_steps"] == 128
    # two real episodes, each ended by the pole falling (a real termination)
    assert result["honesty"]["terminations"] == 2 and result["honesty"]["model_error"] > 0
    assert result["real_return"][0] >= 1  # InvertedPendulum pays 1 per step survived
    assert (out / "agent.zip").is_file()


def test_dream_trains_in_short_rollouts_branching_from_real_data(
    pendulum_checkpoint, pendulum_dir, tmp_path, capsys
):
    out = tmp_path / "dream"
    command = (
        f"dream --checkpoint {pendulum_checkpoint} --algo ppo --steps 64 --eval-episodes 2 "
        f"--start-states {pendulum_dir} --episode-steps 4 --out {out} --quiet"
    )
    assert cli(command) == 0
    assert "in whole episodes, the plain dream" in capsys.readouterr().out
    result = json.loads((out / "dream.json").read_text())
    assert result["episode_steps"] == 4
    # scored where it trained, an episode lasts at most 4 imagined steps of reward ~1
    assert result["dream_return"][0] <= 4 * 1.5
    assert cli(command.replace("--episode-steps 4", "--episode-steps 0")) == 2


def test_train_eval_video_and_resume(tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    base = "--env InvertedPendulum-v5 --preset tiny --prefill 200 --eval-episodes 1 --quiet"
    command = f"train {base} --steps 300 --eval-every 300 --out {run} --no-video"
    assert cli(command + " --wm.c-max 0.8 --agent.horizon 4 --agent.model-fit.batch-size 8") == 0
    printed = capsys.readouterr().out
    assert "final evaluation: return" in printed
    assert (run / "agent.pt").is_file() and (run / "model.safetensors").is_file()
    assert len(Replay.load(run / "replay")) == 300
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["env_steps"] == 300 and metrics["updates"] > 0
    agent = metrics["config"]["agent"]  # the generated flags reached the config
    # laid over the agent's default overrides, which stay
    assert agent["model_overrides"] == {"obs_symlog": True, "c_max": 0.8}
    assert agent["horizon"] == 4
    assert agent["model_fit"]["batch_size"] == 8 and agent["preset"] == "tiny"

    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    tags = events.Tags()
    for key in ("wm/loss", "actor/loss", "actor/entropy", "critic/loss", "eval/return"):
        assert key in tags["scalars"], key
    assert "loop/contraction_bound" in tags["scalars"]
    assert "loop/imagine_iters" in tags["histograms"]
    assert events.Images("eval/open_loop_video")[-1].encoded_image_string[:4] == b"GIF8"

    assert cli(f"train {base} --steps 300 --out {run}") == 2  # the folder holds a run
    assert "--resume" in capsys.readouterr().err
    assert cli(f"train --resume {run} --steps 350 --quiet --no-video --no-tensorboard") == 0
    assert len(Replay.load(run / "replay")) == 350
    assert cli(f"train --resume {run} --env Pendulum-v1 --quiet") == 2
    assert "cannot resume" in capsys.readouterr().err
    assert cli(f"train --resume {run} --planner mppi --quiet") == 2
    assert "cannot change agent.planner.kind" in capsys.readouterr().err

    assert cli(f"eval --run {run} --episodes 2") == 0
    printed = capsys.readouterr().out
    assert "over 2 episodes" in printed
    # the agent's own model checked along those episodes: a tiny agent drops the pole
    error = float(printed.split("1-step error ")[1].split()[0])
    assert 0 < error < 100
    assert "at the 2 real terminations" in printed and "standard deviations" in printed

    video = tmp_path / "agent.mp4"
    assert cli(f"video --run {run} --steps 12 --size 64 --out {video}") == 0
    import imageio.v3 as iio

    frames = iio.imread(video)
    assert frames.shape[0] == 13 and frames.shape[2] == 3 * 64  # the start frame + 12 steps


def test_env_kwargs_reach_training_evaluation_and_a_resume(tmp_path, capsys):
    import tests.fakes  # noqa: F401  (registers loopwm-test/Reach-v0)
    from loopwm.agents import load_agent

    run = tmp_path / "run"
    kwargs = '{"length": 5, "low": -1.0, "high": 1.0}'  # episodes of 5 steps, actions in [-1, 1]
    base = f"--prefill 60 --eval-episodes 2 --quiet --no-video --no-tensorboard {TINY_AGENT}"
    command = f"train --env loopwm-test/Reach-v0 --env-kwargs '{kwargs}' --steps 120 "
    assert cli(f"{command} --eval-every 120 --out {run} {base}") == 0
    replay = Replay.load(run / "replay")
    assert replay.truncated.sum() == 120 // 5  # the training env: every episode 5 steps long
    metrics = json.loads((run / "metrics.json").read_text())
    assert min(metrics["evaluations"][-1]["returns"]) >= -5.0  # the eval env's too
    agent, config, _ = load_agent(run)
    env = config.make_env()
    assert env.action_space.low[0] == -1.0 and env.spec.kwargs["length"] == 5
    obs, _ = env.reset(seed=0)
    assert env.action_space.contains(agent.act(obs, explore=False))
    capsys.readouterr()
    assert cli(f"eval --run {run} --episodes 3") == 0
    printed = capsys.readouterr().out
    assert "15 real transitions" in printed  # 3 episodes of 5 steps: the kwargs reached it
    mean = float(printed.split("return ")[1].split()[0])
    assert -5.0 <= mean <= 0.0
    assert cli(f"train --resume {run} --steps 130 --quiet --no-video --no-tensorboard") == 0
    assert Replay.load(run / "replay").truncated.sum() == 130 // 5  # kept on resume
    for changed in ('{"length": 6}', "{}"):  # neither changed nor dropped
        assert cli(f"train --resume {run} --env-kwargs '{changed}' --quiet") == 2
        assert "cannot change env_kwargs " in capsys.readouterr().err
    assert cli(f"{command} --env-kwargs '{{\"lenght\": 5}}' --out {tmp_path / 'typo'}") == 2
    assert "cannot make environment 'loopwm-test/Reach-v0' with" in capsys.readouterr().err
    assert cli(f"{command} --env-kwargs '{{\"render_mode\": 1}}' --out {tmp_path / 'x'}") == 2
    assert "env_kwargs cannot set render_mode" in capsys.readouterr().err
    assert cli(f"{command} --env-kwargs '[1]' --out {tmp_path / 'bad'}") == 2
    assert "env_kwargs must be a dict" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_bench_lists_scripts_and_refuses_unknown_names(capsys):
    assert cli("bench") == 0
    listed = capsys.readouterr().out
    for name in ("agent", "fit_baselines", "dream_throughput", "adaptive_compute"):
        assert name in listed
    assert "tables" not in listed and "plots" not in listed
    assert cli("bench no_such_benchmark --quick") == 2
    assert "unknown benchmark" in capsys.readouterr().err


def test_a_decoder_free_agent_trains_and_its_model_refuses_to_draw_what_it_imagines(
    tmp_path, capsys
):
    run = tmp_path / "run"
    command = (
        f"train --env InvertedPendulum-v5 {TINY_AGENT} --steps 250 --prefill 200 --pretrain 5 "
        f"--eval-every 250 --eval-episodes 1 --quiet --no-video --no-tensorboard --out {run} "
        f"--agent.model-fit.loss-weights '{{\"obs\": 0}}'"
    )
    assert cli(command) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["config"]["agent"]["model_fit"]["loss_weights"]["obs"] == 0
    assert metrics["final_return_mean"] > 0
    assert not load(run / "model.safetensors").decodes
    capsys.readouterr()
    assert cli(f"video --run {run} --steps 4 --size 64 --out {tmp_path / 'v.mp4'}") == 2
    assert "decoder-free" in capsys.readouterr().err
    assert cli(f"eval --run {run} --episodes 1") == 0  # acting needs no decoder
