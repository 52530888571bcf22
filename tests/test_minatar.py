"""Binary-grid observations (MinAtar's): seen as uint8 planes, drawn in colour, and a real
MinAtar game through collect -> fit -> dream -> video -> train."""

import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from loopwm.collect import collect
from loopwm.config import FitConfig
from loopwm.envs import BinaryPlanes, DreamEnv, ObsCodec, make_env
from loopwm.envs.pixels import PLANE_COLOURS, image_frame
from loopwm.envs.spaces import check_observation_space
from loopwm.errors import ConfigError
from loopwm.fit import fit
from loopwm.replay import Replay

from .test_cli import TINY_AGENT, cli

GAME = "MinAtar/Breakout-v1"


def test_bool_grids_are_refused_bare_and_seen_as_uint8_planes_through_the_wrapper():
    grid = spaces.Box(0, 1, (10, 10, 4), bool)
    with pytest.raises(TypeError, match="BinaryPlanes"):
        check_observation_space(grid)
    make_env(GAME).close()  # registers the games
    wrapped = BinaryPlanes(gym.make(GAME))
    assert wrapped.observation_space == spaces.Box(0, 1, (10, 10, 4), np.uint8)
    raw = np.zeros((10, 10, 4), bool)
    raw[3, 4, 2] = True
    planes = wrapped.observation(raw)
    assert planes.dtype == np.uint8 and planes[3, 4, 2] == 1 and planes.sum() == 1
    with pytest.raises(ConfigError, match="bool"):
        BinaryPlanes(gym.make("CartPole-v1"))


def test_make_env_observes_a_minatar_game_through_binary_planes():
    env = make_env(GAME)
    assert isinstance(env, BinaryPlanes)
    assert env.observation_space == spaces.Box(0, 1, (10, 10, 4), np.uint8)
    assert env.action_space == spaces.Discrete(3)
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.uint8 and set(np.unique(obs)) <= {0, 1} and obs.sum() > 0
    codec = ObsCodec(env.observation_space)
    assert codec.planes and codec.dim == 400 and codec.storage_dtype == "uint8"
    assert not ObsCodec(spaces.Box(0, 255, (16, 16, 3), np.uint8)).planes
    with pytest.raises(ValueError, match="cannot make environment 'MinAtar/NoSuchGame-v1'"):
        make_env("MinAtar/NoSuchGame-v1")


def test_make_env_names_the_extra_when_minatar_is_missing(monkeypatch):
    registry = {k: v for k, v in gym.registry.items() if not k.startswith("MinAtar/")}
    monkeypatch.setattr(gym, "registry", registry)  # as if the games were never registered
    monkeypatch.setitem(sys.modules, "minatar.gym", None)  # import fails
    with pytest.raises(ConfigError, match=r"pip install 'loopwm\[minatar\]'"):
        make_env(GAME)


def test_planes_are_drawn_in_the_colour_of_their_highest_set_plane():
    image = np.zeros((2, 3, 12), np.uint8)
    image[0, 0, 1] = 1
    image[0, 1, [0, 3]] = 1  # the highest set plane wins
    image[1, 2, 11] = 1  # planes past the palette reuse it
    frame = image_frame(image, planes=True)
    assert frame.shape == (2, 3, 3) and frame.dtype == np.uint8
    np.testing.assert_array_equal(frame[0, 0], PLANE_COLOURS[1])
    np.testing.assert_array_equal(frame[0, 1], PLANE_COLOURS[3])
    np.testing.assert_array_equal(frame[1, 2], PLANE_COLOURS[11 % len(PLANE_COLOURS)])
    assert frame[1, :2].sum() == 0 and frame[0, 2].sum() == 0  # nothing set: black
    rgb = np.arange(2 * 3 * 9, dtype=np.uint8).reshape(2, 3, 9)  # three stacked frames
    np.testing.assert_array_equal(image_frame(rgb), rgb[..., 6:])
    grey = rgb[..., :2]  # not stacked RGB: the last channel in grey
    np.testing.assert_array_equal(image_frame(grey), np.repeat(grey[..., 1:], 3, axis=-1))


@pytest.fixture(scope="module")
def minatar_checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("minatar")
    meta = collect(GAME, 400, root / "data", seed=0, progress=False)
    assert meta["obs_dtype"] == "uint8" and meta["action_space"] == {"discrete": 3, "start": 0}
    replay = Replay.load(root / "data")
    assert set(np.unique(replay.obs)) == {0, 1}  # the planes' bits, stored as they are
    cfg = FitConfig(steps=30, batch_size=16, horizon=3, eval_horizon=3, eval_every=0)
    model, _ = fit(replay, preset="tiny", config=cfg, out=root / "fit", progress=False)
    assert model.config.image_shape == (10, 10, 4)
    return root / "fit" / "model.safetensors"


def test_a_minatar_dream_returns_planes_and_passes_both_env_checkers(minatar_checkpoint):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make("loopwm/Dream-v0", checkpoint=minatar_checkpoint, render_mode="rgb_array")
    assert env.observation_space == spaces.Box(0, 1, (10, 10, 4), np.uint8)
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
        sb3_check_env(DreamEnv(minatar_checkpoint), warn=True)
    # SB3's advice for what looks like an image (0..255 bounds, 36x36 for its CnnPolicy);
    # nothing about the dream itself
    advice = ("[0, 255]", "minimal resolution")
    assert [str(r.message) for r in records if not any(a in str(r.message) for a in advice)] == []
    obs, _ = env.reset(seed=0)
    obs, reward, *_ = env.step(1)
    assert obs.dtype == np.uint8 and set(np.unique(obs)) <= {0, 1} and np.isfinite(reward)
    np.testing.assert_array_equal(env.render(), image_frame(obs, planes=True))


def test_video_and_a_short_agent_run_on_a_minatar_game(minatar_checkpoint, tmp_path):
    import imageio.v3 as iio

    out = tmp_path / "minatar.mp4"
    assert cli(f"video --checkpoint {minatar_checkpoint} --steps 6 --size 48 --out {out}") == 0
    frames = iio.imread(out)
    assert frames.shape == (7, 48, 3 * 48, 3)
    assert frames[:, :, :48].std() > 0  # the real planes were drawn
    run = tmp_path / "run"
    command = (
        f"train --env {GAME} {TINY_AGENT} --steps 120 --prefill 60 --eval-every 120 "
        f"--eval-episodes 1 --quiet --no-video --no-tensorboard --out {run}"
    )
    assert cli(command) == 0
    assert len(Replay.load(run / "replay")) == 120
