"""loopwm's contact task: registered, deterministic, and honest about its contacts."""

import gymnasium as gym
import numpy as np
from gymnasium.utils.env_checker import check_env

import loopwm.envs  # noqa: F401  (registers loopwm/BouncingBall-v0)


def test_env_checker_and_registration():
    env = gym.make("loopwm/BouncingBall-v0")
    assert env.spec.max_episode_steps == 500
    # the render check would open a "human" window; rgb_array is tested below
    check_env(env.unwrapped, skip_render_check=True)
    assert env.observation_space.shape == (4,) and env.action_space.shape == (2,)
    frames = gym.make("loopwm/BouncingBall-v0", render_mode="rgb_array", width=64, height=64)
    frames.reset(seed=0)
    assert frames.render().shape == (64, 64, 3)


def test_contacts_are_reported_where_velocity_flips():
    env = gym.make("loopwm/BouncingBall-v0")
    obs, _ = env.reset(seed=0)
    contact, flips = [], []
    for _ in range(500):
        nxt, reward, terminated, truncated, info = env.step(np.zeros(2))
        contact.append(info["contact"])
        # a bounce reverses a velocity component; free flight never does with zero force
        flips.append(bool((np.sign(nxt[2:]) * np.sign(obs[2:]) < 0).any()))
        assert info["contact"] == (info["contact_substeps"] > 0)
        assert set(info["contact_geoms"]) <= {"floor", "ceiling", "left_wall", "right_wall"}
        obs = nxt
    contact, flips = np.array(contact), np.array(flips)
    assert contact.sum() >= 5  # it keeps bouncing: contacts are nearly elastic
    assert flips[contact].mean() > 0.5  # contacts are where the dynamics jump
    # away from contacts the only velocity flip is vz at the apex of a vertical arc
    assert flips[~contact].mean() < 0.1
    assert truncated and not terminated


def test_same_seed_same_episode():
    def run(seed):
        env = gym.make("loopwm/BouncingBall-v0")
        env.reset(seed=seed)
        return np.array([env.step(np.array([0.5, -0.2]))[0] for _ in range(50)])

    np.testing.assert_array_equal(run(1), run(1))
    assert not np.array_equal(run(1), run(2))
