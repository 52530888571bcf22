"""DeepMind Control tasks through shimmy: flat observations, clear errors, a short run."""

import json
import sys

import gymnasium as gym
import imageio.v3 as iio
import numpy as np
import pytest
from gymnasium import spaces

from loopwm import load
from loopwm.checkpoint import recorded_action_repeat
from loopwm.envs import make_env
from loopwm.envs.dream import make_dream_env
from loopwm.envs.pixels import disable_shadows
from loopwm.envs.render import DMC_STATE_FROM_OBS, StateRenderer
from loopwm.errors import ConfigError
from loopwm.replay import Replay

from .test_cli import TINY_AGENT, cli

TASK = "dm_control/cartpole-balance-v0"


def test_make_env_flattens_a_dmc_task_into_one_float_vector():
    env = make_env(TASK)
    # position (3: cart x, cos and sin of the pole angle) and velocity (2), flattened
    assert env.observation_space.shape == (5,) and env.observation_space.dtype == np.float64
    assert env.action_space == spaces.Box(-1.0, 1.0, (1,), np.float64)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (5,) and np.isfinite(obs).all()
    again, _ = make_env(TASK).reset(seed=0)
    np.testing.assert_array_equal(obs, again)  # seeded
    obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
    assert obs.shape == (5,) and 0.0 <= reward <= 1.0 and not terminated and not truncated
    with pytest.raises(ConfigError, match="cannot make environment 'dm_control/no_such-task-v0'"):
        make_env("dm_control/no_such-task-v0")


def test_make_env_names_the_extra_when_shimmy_is_missing(monkeypatch):
    registry = {k: v for k, v in gym.registry.items() if not k.startswith("dm_control/")}
    monkeypatch.setattr(gym, "registry", registry)  # as if shimmy had never registered
    monkeypatch.setitem(sys.modules, "shimmy", None)  # import fails
    with pytest.raises(ConfigError, match=r"shimmy is missing.*pip install 'loopwm\[dmc\]'"):
        make_env(TASK)


def test_a_dm_control_that_does_not_run_on_the_installed_mujoco_is_named(monkeypatch):
    make_env(TASK).close()  # registered

    def make(env_id, **kwargs):  # dm_control 1.0.50 on mujoco 4 fails like this
        raise AttributeError("'MjModel' object has no attribute 'flex_vertedge'")

    monkeypatch.setattr(gym, "make", make)
    with pytest.raises(ConfigError, match=r"installed mujoco .*pip install 'loopwm\[dmc\]'"):
        make_env(TASK)


def test_dmc_ids_default_to_action_repeat_2_and_every_other_env_to_1(tmp_path):
    from loopwm.agents import TrainConfig
    from loopwm.collect import collect

    assert TrainConfig(env_id=TASK).repeat == 2  # TD-MPC2's and DreamerV3's setting
    assert TrainConfig(env_id="Pendulum-v1").repeat == 1
    assert TrainConfig(env_id=TASK, action_repeat=1).repeat == 1  # a given repeat is kept
    assert TrainConfig().replace(env_id=TASK).repeat == 2  # follows the env, not the base
    assert collect(TASK, 4, tmp_path / "data", progress=False)["action_repeat"] == 2
    assert collect(TASK, 4, tmp_path / "d1", progress=False, action_repeat=1)["action_repeat"] == 1


def test_the_agent_trains_on_a_dmc_task_with_its_default_action_repeat(tmp_path, capsys):
    run = tmp_path / "run"
    command = (
        f"train --env {TASK} {TINY_AGENT} --steps 300 --prefill 200 --pretrain 10 "
        f"--eval-every 300 --eval-episodes 1 --quiet --no-video --no-tensorboard --out {run}"
    )
    assert cli(command) == 0
    replay = Replay.load(run / "replay")
    assert len(replay) == 300 and replay.meta["action_repeat"] == 2  # the DMC default
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["action_repeat"] == 2
    # the run's model records it, so a DreamEnv of it steps its real env twice per action
    assert recorded_action_repeat(load(run / "model.safetensors")) == 2
    # an evaluation episode is the suite's 1,000 env steps, each paying between 0 and 1
    assert 0.0 < metrics["final_return_mean"] <= 1000.0
    assert metrics["updates"] == 10 + 50  # the pretraining, then 0.5 per agent step
    capsys.readouterr()
    assert cli(f"eval --run {run} --episodes 1 --seed 10000") == 0  # the run's eval seed
    printed = capsys.readouterr().out
    assert f"return {metrics['final_return_mean']:.1f}" in printed  # so the run's repeat too
    assert cli(f"train --resume {run} --action-repeat 1 --quiet") == 2
    assert "cannot change action_repeat" in capsys.readouterr().err
    # its dream ends where the suite truncates, 1,000 env steps: 500 imagined ones (the
    # suite never terminates, so without the limit a dream episode would never end)
    dream = make_dream_env(run / "model.safetensors", cont_threshold=0.0)  # no learned end
    dream.reset(seed=0)
    steps, truncated = 0, False
    while not truncated:
        truncated = dream.step(dream.action_space.sample())[3]
        steps += 1
    assert steps == 500
    # the run's agent filmed: real | imagined state | iterations, at the run's repeat
    video = tmp_path / "agent.mp4"
    assert cli(f"video --run {run} --out {video} --steps 6 --resync 3 --size 64") == 0
    assert iio.imread(video).shape == (7, 64, 3 * 64, 3)


def _state(env: gym.Env, root_x: int | None) -> np.ndarray:
    """qpos (angles wrapped, an unobserved root x left out), qvel and the target's place
    of a DeepMind Control env's physics."""
    physics = env.unwrapped.physics
    qpos = np.angle(np.exp(1j * physics.data.qpos))  # slides stay put: all lie within pi
    if root_x is not None:
        qpos = np.delete(qpos, root_x)
    named = physics.named.model.geom_pos
    target = named["target"] if "target" in named.axes.row.names else []
    return np.concatenate([qpos, physics.data.qvel, np.ravel(target)])


DRAWN_TASKS = (
    "ball_in_cup-catch", "cartpole-swingup", "cartpole-two_poles", "cheetah-run",
    "hopper-hop", "point_mass-easy", "reacher-easy", "walker-walk",
)  # fmt: skip


def test_every_drawn_dmc_domain_is_tested():
    assert {task.split("-")[0] for task in DRAWN_TASKS} == set(DMC_STATE_FROM_OBS)


@pytest.mark.parametrize("task", DRAWN_TASKS)
def test_an_imagined_dmc_observation_is_drawn_from_the_state_that_gives_it(task):
    domain = task.split("-")[0]
    task = f"dm_control/{task}-v0"
    real = make_env(task, render_mode="rgb_array", width=64, height=64)
    real.reset(seed=0)
    for _ in range(20):
        obs = real.step(real.action_space.sample())[0]
    drawn = make_env(task, render_mode="rgb_array", width=64, height=64)
    renderer = StateRenderer(drawn)
    renderer.reset(obs)
    root_x = DMC_STATE_FROM_OBS[domain].root_x
    np.testing.assert_allclose(_state(drawn, root_x), _state(real, root_x), atol=1e-9)
    frame = renderer.render()
    assert frame.shape == (64, 64, 3) and frame.std() > 0
    if DMC_STATE_FROM_OBS[domain].root_x is None:  # nothing unobserved: the same picture
        disable_shadows(real.unwrapped)
        assert np.abs(frame.astype(int) - real.render()).mean() < 1


def test_an_imagined_dmc_runner_moves_by_its_velocity_over_the_action_repeat():
    env = make_env(
        "dm_control/cheetah-run-v0", action_repeat=2, render_mode="rgb_array", width=64, height=64
    )
    renderer = StateRenderer(env)  # the repeat read from the env's wrapper
    assert renderer.dt == pytest.approx(2 * 0.01)  # two control steps of 10 ms
    obs = np.zeros(17)
    obs[8] = 3.0  # velocity[0]: the root's x velocity (position holds qpos[1:], 8 values)
    renderer.reset(obs)
    renderer.advance(obs)
    renderer.advance(obs)
    assert env.unwrapped.physics.data.qpos[0] == pytest.approx(2 * 3.0 * 0.02)
    assert StateRenderer(env, action_repeat=1).dt == pytest.approx(0.01)


def test_action_repeat_spans_env_steps_in_the_agent_loop(tmp_path):
    from loopwm.agents import TrainConfig, train

    config = TrainConfig(
        env_id="Pendulum-v1", steps=60, prefill=60, pretrain=0, action_repeat=4,
        eval_every=60, eval_episodes=1, seed=0,
    )  # fmt: skip
    summary = train(config, tmp_path / "run", progress=False, tensorboard=False, video=False)
    # Pendulum-v1's 200-step time limit counts env steps: 50 agent steps per episode
    assert summary["episodes"] == 1 and summary["env_steps"] == 60
    with pytest.raises(ConfigError, match="action_repeat"):
        TrainConfig(action_repeat=0)


def test_a_dmc_task_seen_through_its_pixels():
    from loopwm.agents import TrainConfig

    pixels = "pixels/dm_control/cartpole-balance-v0"
    env = make_env(pixels)  # gymnasium ids hold one namespace: made, not registered
    obs, info = env.reset(seed=0)
    assert env.observation_space == spaces.Box(0, 255, (64, 64, 9), np.uint8)
    assert obs.shape == (64, 64, 9) and info["state"].shape == (5,)  # flat state kept
    # the newest frame is the task's camera 0 at 64x64, shadows off
    state = make_env(TASK, render_mode="rgb_array", width=64, height=64)
    state.reset(seed=0)
    disable_shadows(state.unwrapped)
    np.testing.assert_array_equal(obs[..., -3:], state.render())
    assert TrainConfig(env_id=pixels).repeat == 2  # the suite's default, as for its states
