"""Pixel observations: the pixel env wrapper, uint8 replay, the conv model, and a fake
pixel env through collect -> fit -> dream -> video -> train -> resume -> eval."""

import json
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from loopwm import LoopWM, LoopWMConfig, load
from loopwm.collect import collect
from loopwm.config import FitConfig
from loopwm.envs import DreamEnv, DreamVectorEnv, ObsCodec, make_env
from loopwm.errors import CheckpointError, ConfigError
from loopwm.fit import fit
from loopwm.replay import Replay, ReplayWriter
from loopwm.training import obs_statistics, set_obs_statistics

from .fakes import PixelReachEnv
from .test_cli import TINY_AGENT, cli

PIXEL_ID = "loopwm-test/PixelReach-v0"  # registered by tests.fakes


def test_pixel_ids_observe_stacked_rendered_frames():
    env = make_env("pixels/InvertedPendulum-v5", size=16)
    assert env.observation_space == spaces.Box(0, 255, (16, 16, 9), np.uint8)
    with pytest.raises(gym.error.ResetNeeded, match="reset"):
        env.render()  # no frame yet
    assert env.spec.max_episode_steps == 1000 and env.spec.reward_threshold == 950
    obs, info = env.reset(seed=0)
    assert obs.dtype == np.uint8 and info["state"].shape == (4,)
    np.testing.assert_array_equal(obs[..., 0:3], obs[..., 6:9])  # the first frame fills it
    assert obs.max() > obs.min()  # something was drawn
    for _ in range(5):
        previous = obs
        obs, *_ = env.step(env.action_space.sample())
        np.testing.assert_array_equal(obs[..., :6], previous[..., 3:])  # newest frame last
    np.testing.assert_array_equal(env.render(), obs[..., 6:])
    env.close()
    cartpole = make_env("pixels/CartPole-v1", size=16, frame_stack=2)  # resampled frames
    assert cartpole.reset(seed=0)[0].shape == (16, 16, 6)
    cartpole.close()
    with pytest.raises(ValueError, match="cannot make environment 'pixels/NoSuchEnv-v9'"):
        make_env("pixels/NoSuchEnv-v9")
    with pytest.raises(ConfigError, match="nests a pixel id"):
        make_env("pixels/pixels/CartPole-v1")
    assert "pixels/pixels/CartPole-v1" not in gym.registry  # nothing registered


def test_the_codec_flattens_images_and_rounds_decoded_pixels_back():
    codec = ObsCodec(spaces.Box(0, 255, (8, 8, 3), np.uint8))
    assert codec.dim == 192 and codec.image_shape == (8, 8, 3)
    assert codec.storage_dtype == "uint8"
    image = np.arange(192, dtype=np.uint8).reshape(8, 8, 3)
    vectors, single = codec.to_vectors(image)
    assert single and vectors.shape == (1, 192) and vectors.dtype == np.float32
    np.testing.assert_array_equal(codec.to_env(vectors)[0], image)  # exact round trip
    decoded = np.full((2, 192), 127.6)
    decoded[0, :3] = [-40.0, 300.0, 0.4]
    back = codec.to_env(decoded)
    assert back.shape == (2, 8, 8, 3) and back.dtype == np.uint8
    assert back[0, 0, 0].tolist() == [0, 255, 0] and back[1, 0, 0, 0] == 128
    with pytest.raises(ValueError, match=r"\(N, 8, 8, 3\)"):
        codec.to_vectors(np.zeros((8, 8), np.uint8))


def test_images_survive_the_replay_bit_for_bit_and_are_compressed(tmp_path):
    rng = np.random.default_rng(0)
    images = np.zeros((30, 16 * 16 * 3), np.uint8)
    images[:, ::7] = rng.integers(0, 256, size=(30, len(range(0, 768, 7))))
    with ReplayWriter(tmp_path, obs_dim=768, action_dim=1, obs_dtype="uint8") as writer:
        for t in range(29):
            writer.add(images[t], [0.5], 1.0, images[t + 1], False, t == 28)
    replay = Replay.load(tmp_path)
    assert replay.obs.dtype == np.uint8 and replay.next_obs.dtype == np.uint8
    np.testing.assert_array_equal(replay.obs, images[:29])
    np.testing.assert_array_equal(replay.next_obs, images[1:])
    chunk = next(tmp_path.glob("chunk_*.npz"))
    assert chunk.stat().st_size < images.nbytes  # both columns, compressed
    assert json.loads((tmp_path / "meta.json").read_text())["obs_dtype"] == "uint8"
    with ReplayWriter(tmp_path / "bad", obs_dim=768, action_dim=1, obs_dtype="uint8") as writer:
        for bad in (np.full(768, 300.0), np.full(768, 0.5), np.full(768, -1)):
            with pytest.raises(ValueError, match="0..255"):
                writer.add(bad, [0.5], 1.0, images[0], False, False)
        assert writer.written == 0


def test_the_default_replay_capacity_keeps_a_pixel_replay_within_its_memory_budget():
    from types import SimpleNamespace

    from loopwm.agents import TrainConfig
    from loopwm.agents.train import REPLAY_MEMORY, replay_capacity

    action = spaces.Box(-1, 1, (1,), np.float32)
    state = SimpleNamespace(observation_space=spaces.Box(-1, 1, (17,)), action_space=action)
    pixels = SimpleNamespace(
        observation_space=spaces.Box(0, 255, (64, 64, 9), np.uint8), action_space=action
    )
    assert replay_capacity(TrainConfig(), state) == 1_000_000
    capacity = replay_capacity(TrainConfig(), pixels)
    assert 100_000 < capacity < 120_000  # 73.7 KB per transition: obs and next obs, uint8
    assert capacity * 2 * 64 * 64 * 9 <= REPLAY_MEMORY
    assert replay_capacity(TrainConfig(replay_capacity=5_000), pixels) == 5_000
    with pytest.raises(ConfigError, match="replay_capacity"):
        TrainConfig(replay_capacity=0)


def test_the_conv_model_sees_pixels_scaled_once_in_one_place():
    config = LoopWMConfig.preset("tiny", obs_dim=768, action_dim=1, image_shape=[16, 16, 3])
    assert config.image_shape == (16, 16, 3)  # read back from JSON as a list
    assert LoopWMConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    model = LoopWM(config)

    class Stored:
        obs = np.random.default_rng(0).integers(0, 256, (50, 768)).astype(np.uint8)

    mean, std = obs_statistics(Stored, pooled=True)
    assert np.all(mean == mean[0]) and np.all(std == std[0])  # one scale for every pixel
    assert mean[0] == pytest.approx(Stored.obs.mean())
    assert std[0] == pytest.approx(Stored.obs.std())
    set_obs_statistics(model, Stored)
    pixels = torch.as_tensor(Stored.obs[:4], dtype=torch.float32)
    expected = model.encoder((pixels - float(mean[0])) / float(std[0]))
    torch.testing.assert_close(model.encode(pixels), expected)
    # the latent is normalised: a shared part cannot drown what differs between frames
    latent = model.encode(pixels * 50.0)
    torch.testing.assert_close(latent.mean(-1), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(latent.std(-1, unbiased=False), torch.ones(4), atol=1e-3, rtol=0)
    decoded = model.decode(model.encode(pixels))
    assert decoded.shape == (4, 768)
    members = model.decoder(torch.zeros(3, 4, config.latent_dim))  # any leading dims
    assert members.shape == (3, 4, 768)
    for bad in ((16, 16), (4, 4, 48), (16, 16, 4)):
        with pytest.raises(ValueError, match="image_shape"):
            config.replace(image_shape=bad)


@pytest.fixture(scope="module")
def pixel_checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("pixels")
    meta = collect(PIXEL_ID, 600, root / "data", seed=0, progress=False)
    assert meta["observation_space"]["shape"] == [16, 16, 3] and meta["obs_dtype"] == "uint8"
    cfg = FitConfig(steps=40, batch_size=16, horizon=3, eval_horizon=3, eval_every=0)
    model, _ = fit(
        Replay.load(root / "data"), preset="tiny", config=cfg, out=root / "fit", progress=False
    )
    assert model.config.image_shape == (16, 16, 3)
    return root / "fit" / "model.safetensors"


def test_a_pixel_dream_returns_images_and_passes_both_env_checkers(pixel_checkpoint):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make("loopwm/Dream-v0", checkpoint=pixel_checkpoint, render_mode="rgb_array")
    assert env.observation_space == spaces.Box(0, 255, (16, 16, 3), np.uint8)
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
        sb3_check_env(DreamEnv(pixel_checkpoint), warn=True)
    # expected advice about the fake env (asymmetric actions on purpose, 16x16 images
    # below SB3's CnnPolicy minimum); nothing about the dream itself
    advice = ("symmetric", "minimal resolution")
    assert [str(r.message) for r in records if not any(a in str(r.message) for a in advice)] == []
    obs, _ = env.reset(seed=0)
    obs, reward, *_ = env.step(np.array([1.0], np.float32))
    assert obs.dtype == np.uint8 and obs.shape == (16, 16, 3) and np.isfinite(reward)
    np.testing.assert_array_equal(env.render(), obs)  # render shows the decoded image
    vector = DreamVectorEnv(pixel_checkpoint, 3)
    batch, _ = vector.reset(seed=0)
    assert batch.shape == (3, 16, 16, 3) and batch.dtype == np.uint8
    assert vector.step(np.zeros((3, 1), np.float32))[0].dtype == np.uint8


def test_state_and_pixel_checkpoints_are_refused_by_the_other_env(
    pixel_checkpoint, pendulum_checkpoint
):
    with pytest.raises(CheckpointError, match="16x16x3 images.*ReachOrigin|16x16x3 images"):
        DreamEnv(pixel_checkpoint, env_id="InvertedPendulum-v5")
    with pytest.raises(CheckpointError, match="4-dim observations.*64x64x9 images"):
        DreamEnv(pendulum_checkpoint, env_id="pixels/InvertedPendulum-v5")


def test_video_of_a_pixel_model_shows_real_and_decoded_frames(pixel_checkpoint, tmp_path):
    out = tmp_path / "pixels.mp4"
    assert cli(f"video --checkpoint {pixel_checkpoint} --steps 6 --size 48 --out {out}") == 0
    import imageio.v3 as iio

    frames = iio.imread(out)
    assert frames.shape == (7, 48, 3 * 48, 3)
    assert frames[:, :, :48].std() > 0  # the real frames were drawn


def test_the_agent_trains_resumes_and_evaluates_on_pixels(tmp_path, capsys):
    run = tmp_path / "run"
    base = f"--env {PIXEL_ID} --prefill 60 --eval-episodes 1 --quiet --no-video"
    command = f"train {base} --steps 120 --eval-every 120 --out {run} {TINY_AGENT}"
    assert cli(command) == 0
    replay = Replay.load(run / "replay")
    assert replay.obs.dtype == np.uint8 and len(replay) == 120
    model = load(run / "model.safetensors")
    assert model.config.image_shape == (16, 16, 3)
    assert cli(f"train --resume {run} --steps 140 --quiet --no-video --no-tensorboard") == 0
    assert len(Replay.load(run / "replay")) == 140
    capsys.readouterr()
    assert cli(f"eval --run {run} --episodes 2") == 0
    assert "over 2 episodes" in capsys.readouterr().out
    env = PixelReachEnv()
    from loopwm.agents import load_agent

    agent, _, _ = load_agent(run)
    obs, _ = env.reset(seed=0)
    assert env.action_space.contains(agent.act(obs, explore=False))
    with pytest.raises(ValueError, match="NaN|shape"):
        agent.act(obs[..., :2], explore=False)


def test_dyna_refuses_pixels_with_a_clear_error():
    from stable_baselines3 import SAC

    from loopwm.agents import DynaCallback

    env = gym.wrappers.TimeLimit(PixelReachEnv(), 20)
    model = SAC("MlpPolicy", env, buffer_size=100, learning_starts=10, verbose=0)
    with pytest.raises(TypeError, match="flat observations"):
        model.learn(20, callback=DynaCallback())


def test_unsupported_image_inputs_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="uint8 observations but its meta.json"):
        from loopwm.replay import meta_image_shape

        meta_image_shape({"obs_dtype": "uint8", "observation_space": {"shape": [768]}})
    with pytest.raises(ValueError, match="obs_dtype"):
        ReplayWriter(tmp_path / "x", obs_dim=4, action_dim=1, obs_dtype="float16")


def test_train_in_a_pixel_dream_checks_the_model_on_the_real_frames(pixel_checkpoint):
    from loopwm.agents import train_in_dream

    result = train_in_dream(pixel_checkpoint, "ppo", 64, eval_episodes=1, progress=False)
    honesty = result["honesty"]
    assert honesty["transitions"] >= 1 and honesty["model_error"] > 0
    assert "reach" not in honesty  # one number per pixel says nothing
    json.dumps(result, allow_nan=False)  # plain JSON: no NaN


def test_sb3_agents_in_a_pixel_dream_get_a_cnn_policy_where_it_can_read_the_images():
    from loopwm.agents.sb3 import sb3_policy_name

    assert sb3_policy_name(spaces.Box(0, 255, (64, 64, 9), np.uint8)) == "CnnPolicy"
    assert sb3_policy_name(spaces.Box(0, 255, (16, 16, 3), np.uint8)) == "MlpPolicy"  # < 36
    assert sb3_policy_name(spaces.Box(-1, 1, (4,), np.float32)) == "MlpPolicy"


def test_image_models_are_not_squashed_by_obs_symlog():
    """obs_symlog applies to flat observations; bounded pixels keep their plain scaling."""
    shape = (8, 8, 3)
    config = LoopWMConfig.preset(
        "tiny", obs_dim=192, action_dim=1, image_shape=shape, obs_symlog=True
    )
    model = LoopWM(config)
    model.set_obs_normalizer(np.full(192, 100.0), np.full(192, 10.0))
    pixels = torch.full((1, 192), 255.0)
    torch.testing.assert_close(model.standardize(pixels), torch.full((1, 192), 15.5))


def test_the_command_line_collects_fits_and_dreams_on_pixels(tmp_path, capsys):
    data, fitted, dream = tmp_path / "data", tmp_path / "fit", tmp_path / "dream"
    assert cli(f"collect --env {PIXEL_ID} --steps 300 --out {data} --quiet") == 0
    assert Replay.load(data).obs.dtype == np.uint8
    fit_flags = "--preset tiny --steps 20 --batch-size 16 --eval-every 0 --quiet"
    assert cli(f"fit --data {data} {fit_flags} --no-tensorboard --out {fitted}") == 0
    assert load(fitted / "model.safetensors").config.image_shape == (16, 16, 3)
    capsys.readouterr()
    checkpoint = fitted / "model.safetensors"
    command = f"dream --checkpoint {checkpoint} --algo ppo --steps 64 --eval-episodes 1"
    assert cli(f"{command} --out {dream} --quiet") == 0
    assert "return on the real env" in capsys.readouterr().out
    result = json.loads((dream / "dream.json").read_text())
    assert result["env_id"] == PIXEL_ID and result["honesty"]["transitions"] == 20
    assert "reach" not in result["honesty"]  # images have no per-value reach
