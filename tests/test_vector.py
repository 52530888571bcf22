"""Vectorised collection: several envs stepped together by ``loopwm train --num-envs``."""

import numpy as np
import pytest

from loopwm.agents import DreamerAgent, PlannerConfig, train
from loopwm.online_replay import OnlineReplay
from loopwm.replay import Replay

from .fakes import ReachOriginEnv
from .test_agent import TINY, InterruptedEnv, fake_env, tiny_train_config

QUIET = dict(progress=False, tensorboard=False, video=False)


def assert_episodes_are_whole(replay: Replay) -> None:
    """Each episode's transitions follow each other (one's next_obs is the next's obs),
    and only its last one ends it."""
    for episode in np.unique(replay.episode):
        rows = np.flatnonzero(replay.episode == episode)
        np.testing.assert_array_equal(replay.next_obs[rows[:-1]], replay.obs[rows[1:]])
        ended = replay.terminated[rows] | replay.truncated[rows]
        assert ended[-1] and not ended[:-1].any()


def test_n_envs_store_n_transitions_per_step_and_reset_each_env(tmp_path):
    config = tiny_train_config(num_envs=4, steps=200, prefill=100, eval_every=200)
    summary = train(config, tmp_path / "run", make_env=fake_env, **QUIET)
    assert summary["env_steps"] == 200
    replay = Replay.load(tmp_path / "run" / "replay")
    assert len(replay) == 200
    # 50 steps per env: two whole 20-step episodes each, then one cut by the end of the run
    lengths = np.bincount(replay.episode)
    assert sorted(lengths) == [10] * 4 + [20] * 8
    assert summary["episodes"] == 8  # episodes the envs ended; the run's end cut 4 more
    assert_episodes_are_whole(replay)
    starts = replay.obs[[np.flatnonzero(replay.episode == e)[0] for e in range(12)]]
    assert len(np.unique(starts)) == 12  # every env and episode has its own start state


def test_resume_after_a_kill_with_four_envs_keeps_every_transition(tmp_path):
    run = tmp_path / "run"
    made = []

    def first_env_killed(env_id):  # the first of the four training envs dies at its 60th step
        made.append(env_id)
        return InterruptedEnv(at=60) if len(made) == 1 else ReachOriginEnv()

    config = tiny_train_config(num_envs=4, steps=300, checkpoint_every=100)
    with pytest.raises(KeyboardInterrupt):
        train(config, run, make_env=first_env_killed, **QUIET)
    assert len(Replay.load(run / "replay")) == 59 * 4  # every completed vector step
    summary = train(None, run, resume=True, make_env=fake_env, **QUIET)
    assert summary["env_steps"] == 300
    replay = Replay.load(run / "replay")
    assert len(replay) == 300
    assert_episodes_are_whole(replay)
    # per env: 59 steps before the kill (20 + 20 + 19, the last cut and closed as truncated),
    # then 16 more after the resume (cut by the end of the run)
    assert sorted(np.bincount(replay.episode)) == [16] * 4 + [19] * 4 + [20] * 8
    assert [e["env_steps"] for e in summary["evaluations"]] == [152, 300]


def test_async_envs_collect_what_sync_envs_collect(tmp_path):
    config = tiny_train_config(num_envs=2, steps=120, prefill=60, eval_every=120)
    train(config, tmp_path / "sync", make_env=fake_env, **QUIET)
    train(config.replace(async_envs=True), tmp_path / "async", make_env=fake_env, **QUIET)
    sync, async_ = Replay.load(tmp_path / "sync/replay"), Replay.load(tmp_path / "async/replay")
    for name in ("obs", "action", "reward", "next_obs", "truncated", "episode"):
        np.testing.assert_array_equal(getattr(sync, name), getattr(async_, name))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"num_envs": 0}, "num_envs must be a positive"),
        ({"num_envs": True}, "num_envs must be a positive"),
        ({"num_envs": 7}, "multiple of num_envs"),
    ],
)
def test_bad_num_envs_are_refused_before_anything_is_written(tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        train(tiny_train_config(**changes), tmp_path / "run", make_env=fake_env, **QUIET)
    assert not (tmp_path / "run").exists()


def test_interleaved_windows_follow_each_env_and_survive_eviction_and_resume(tmp_path):
    replay = OnlineReplay(tmp_path / "replay", obs_dim=1, action_dim=1, capacity=60)
    lengths = [3, 5, 7]  # env i's episodes have lengths[i] steps
    t = np.zeros(3, int)
    episode = np.zeros(3, int)
    for _ in range(40):
        # obs identifies (env, episode, step); next_obs is obs + 1 within an episode
        obs = (1000 * np.arange(3) + 100 * episode + t).astype(np.float32)[:, None]
        t += 1
        done = t == lengths
        replay.add_batch(obs, np.zeros((3, 1)), np.zeros(3), obs + 1, np.zeros(3, bool), done)
        episode[done] += 1
        t[done] = 0
    assert len(replay) < replay.total == 120  # the oldest were dropped from memory

    def check(windows):
        obs, nxt, mask = windows["obs0"][:, 0], windows["next_obs"][..., 0], windows["mask"]
        np.testing.assert_array_equal(nxt[:, 0], obs + 1)
        steps = np.diff(nxt, axis=1)
        assert (steps[mask[:, 1:]] == 1).all()  # inside an episode: the same env, one step on
        assert (mask.sum(1) <= max(lengths)).all()  # never past an episode's end

    rng = np.random.default_rng(0)
    check(replay.sample_sequences(256, 8, rng))
    replay.close()
    resumed = OnlineReplay.resume(tmp_path / "replay", capacity=60)
    assert resumed.total == 120
    check(resumed.sample_sequences(256, 8, rng))
    assert_episodes_are_whole(Replay.load(tmp_path / "replay"))


def test_batched_acting_keeps_one_plan_per_env():
    env = ReachOriginEnv()
    config = TINY.replace(
        planner=PlannerConfig(kind="mppi", samples=16, policy_samples=2, elites=4)
    )
    agent = DreamerAgent(env.observation_space, env.action_space, config, seed=0)
    obs = np.array([[-0.5], [0.0], [0.5]], np.float32)
    actions = agent.act(obs, explore=True)
    assert actions.shape == (3, 1) and (actions >= -2).all() and (actions <= 4).all()
    plans = [plan.clone() for plan in agent._plans]
    assert agent.planner.previous_plan is None  # the one-env plan is left alone
    agent.reset(envs=[1])
    assert agent._plans[1] is None and torch_equal(agent._plans[0], plans[0])
    with pytest.raises(ValueError, match=r"\(N, 1\)"):
        agent.act(np.zeros((3, 2), np.float32), explore=False)


def torch_equal(a, b) -> bool:
    return bool((a == b).all())
