"""Action repeat: one stored transition spans several env steps."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from loopwm.cli import main as cli
from loopwm.envs import make_env
from loopwm.envs.repeat import ActionRepeat
from loopwm.errors import ConfigError
from loopwm.replay import Replay


class CounterEnv(gym.Env):
    """Observation: env steps since reset; reward 1 per step; terminates after 5 steps;
    ``info["odd"]`` is True on odd steps only."""

    def __init__(self) -> None:
        self.observation_space = spaces.Box(0.0, 100.0, (1,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self._t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self._t += 1
        obs = np.array([self._t], np.float32)
        return obs, 1.0, self._t >= 5, False, {"odd": self._t % 2 == 1, "t": self._t}


def test_rewards_sum_events_are_or_ed_and_the_episode_ends_at_its_sub_step():
    env = ActionRepeat(CounterEnv(), 3)
    env.reset(seed=0)
    obs, reward, terminated, _, info = env.step(np.zeros(1, np.float32))
    assert obs[0] == 3 and reward == 3.0 and not terminated
    assert info["repeats"] == 3 and info["odd"] is True and info["t"] == 3  # last sub-step's
    obs, reward, terminated, _, info = env.step(np.zeros(1, np.float32))
    # terminated at env step 5: the sixth is never run
    assert obs[0] == 5 and reward == 2.0 and terminated and info["repeats"] == 2


def test_an_event_of_an_earlier_sub_step_is_still_reported():
    env = ActionRepeat(CounterEnv(), 2)
    env.reset(seed=0)
    # sub-steps 1 (odd) and 2 (even, the last): the last one's flag alone would say False
    assert env.step(np.zeros(1, np.float32))[4]["odd"] is True


def test_make_env_repeats_and_refuses_a_repeat_below_one():
    env = make_env("Pendulum-v1", action_repeat=4)
    env.reset(seed=0)
    assert env.step(env.action_space.sample())[4]["repeats"] == 4
    with pytest.raises(ConfigError, match="action_repeat"):
        make_env("Pendulum-v1", action_repeat=0)


def test_collect_with_action_repeat_records_it_and_spans_that_many_steps(tmp_path):
    out = tmp_path / "data"
    command = f"collect --env Pendulum-v1 --steps 60 --action-repeat 4 --out {out} --quiet"
    assert cli(command.split()) == 0
    data = Replay.load(out)
    assert data.meta["action_repeat"] == 4
    # Pendulum's 200-step limit counts env steps: 50 transitions per episode
    assert data.truncated.sum() >= 1 and int(np.flatnonzero(data.truncated)[0]) == 49
    plain = tmp_path / "plain"
    assert cli(f"collect --env Pendulum-v1 --steps 5 --out {plain} --quiet".split()) == 0
    assert Replay.load(plain).meta["action_repeat"] == 1


def test_a_model_of_repeated_data_dreams_films_and_is_scored_with_that_repeat(
    tmp_path, monkeypatch
):
    """``loopwm fit`` records the dataset's repeat; the dream's time limit, its real env,
    ``loopwm video --checkpoint`` and ``train_in_dream``'s real evaluation all follow it."""
    import gymnasium as gym

    import loopwm.envs  # noqa: F401  (registers loopwm/Dream-v0)
    import loopwm.video
    from loopwm.agents import train_in_dream
    from loopwm.checkpoint import load, recorded_action_repeat
    from loopwm.envs import DreamEnv
    from loopwm.errors import CheckpointError

    data, fitted = tmp_path / "data", tmp_path / "fit"
    collect = (
        f"collect --env InvertedPendulum-v5 --steps 200 --action-repeat 4 --out {data} --quiet"
    )
    assert cli(collect.split()) == 0
    fit = f"fit --data {data} --preset tiny --steps 5 --horizon 2 --eval-horizon 2 --out {fitted}"
    fit += " --quiet"
    assert cli(fit.split()) == 0
    checkpoint = fitted / "model.safetensors"
    assert recorded_action_repeat(load(checkpoint)) == 4

    dream = DreamEnv(checkpoint)
    assert dream.core.action_repeat == 4
    assert dream.core.max_episode_steps == 250  # the real 1000-step limit, in imagined steps
    dream.core.real_env.reset(seed=0)
    assert dream.core.real_env.step(np.zeros(1, np.float32))[4]["repeats"] == 4
    probe = gym.make("InvertedPendulum-v5")
    real_fps = probe.metadata["render_fps"]
    probe.close()
    assert dream.metadata["render_fps"] == real_fps / 4
    dream.close()
    unrepeated = DreamEnv(checkpoint, action_repeat=1)
    assert unrepeated.core.max_episode_steps == 1000
    unrepeated.close()
    made = gym.make("loopwm/Dream-v0", checkpoint=str(checkpoint), cont_threshold=0.0)
    made.reset(seed=0)
    steps, truncated = 0, False
    while not truncated:
        truncated = made.step(made.action_space.sample())[3]
        steps += 1
    made.close()
    assert steps == 250

    seen = {}
    real_rollout = loopwm.video.record_rollout

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real_rollout(*args, **kwargs)

    monkeypatch.setattr(loopwm.video, "record_rollout", spy)
    video = f"video --checkpoint {checkpoint} --steps 4 --size 64 --out {tmp_path / 'v.mp4'}"
    assert cli(video.split()) == 0 and seen["action_repeat"] == 4

    result = train_in_dream(checkpoint, "ppo", 64, eval_episodes=1, out=tmp_path / "ppo")
    assert result["action_repeat"] == 4

    model = load(checkpoint)
    model.checkpoint_extra = {"action_repeat": 0}
    with pytest.raises(CheckpointError, match="action_repeat"):
        recorded_action_repeat(model)
