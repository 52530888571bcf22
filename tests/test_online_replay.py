import numpy as np
import pytest

from loopwm.online_replay import OnlineReplay
from loopwm.replay import Replay


def fill(replay: OnlineReplay, start: int, count: int, episode_length: int = 13) -> None:
    """Transitions whose obs is their global index; episodes end every ``episode_length``."""
    for t in range(start, start + count):
        ended = t % episode_length == episode_length - 1
        replay.add([t, 0.0], [0.5], 1.0, [t + 1, 0.0], ended, False)


def test_memory_is_bounded_and_the_disk_keeps_everything(tmp_path):
    replay = OnlineReplay(tmp_path / "r", obs_dim=2, action_dim=1, capacity=50, chunk_size=7)
    fill(replay, 0, 120)
    assert len(replay) <= 50 and replay.total == 120
    assert replay.obs[-1, 0] == 119  # the newest transitions stay in memory
    replay.close()
    stored = Replay.load(tmp_path / "r")
    np.testing.assert_array_equal(stored.obs[:, 0], np.arange(120))


def test_windows_never_cross_an_episode_end(tmp_path):
    replay = OnlineReplay(tmp_path / "r", obs_dim=2, action_dim=1, capacity=40, chunk_size=7)
    fill(replay, 0, 100)
    rng = np.random.default_rng(0)
    batch = replay.sample_sequences(256, 6, rng)
    start = batch["obs0"][:, 0].astype(int)  # (B,)
    for b in range(256):
        valid = batch["mask"][b]
        steps = batch["next_obs"][b, valid, 0].astype(int) - 1  # global indices of transitions
        np.testing.assert_array_equal(steps, start[b] + np.arange(valid.sum()))
        episode_end = (start[b] // 13) * 13 + 12
        assert steps[-1] <= min(episode_end, 99)  # the open episode ends at the newest step
        if not valid.all():
            assert steps[-1] == min(episode_end, 99)


def test_resume_reloads_every_stored_transition_and_closes_the_open_episode(tmp_path):
    replay = OnlineReplay(tmp_path / "r", obs_dim=2, action_dim=1, capacity=30, chunk_size=10)
    fill(replay, 0, 45)  # 40 on disk, 5 buffered (lost, as in a kill)
    resumed = OnlineReplay.resume(tmp_path / "r", capacity=30)
    assert resumed.total == 40 and len(resumed) == 30
    assert resumed.truncated[-1]  # episode 3 (transitions 39..) was cut by the kill
    fill(resumed, 40, 5)
    resumed.close()
    stored = Replay.load(tmp_path / "r")
    np.testing.assert_array_equal(stored.obs[:, 0], np.arange(45))
    assert stored.episode[40] == stored.episode[39] + 1


def test_bad_input_is_refused(tmp_path):
    with pytest.raises(ValueError, match="capacity"):
        OnlineReplay(tmp_path / "a", obs_dim=2, action_dim=1, capacity=0)
    replay = OnlineReplay(tmp_path / "b", obs_dim=2, action_dim=1)
    with pytest.raises(ValueError, match="empty"):
        replay.sample_obs(4, np.random.default_rng(0))
    with pytest.raises(ValueError, match="non-finite"):
        replay.add([np.nan, 0.0], [0.0], 0.0, [0.0, 0.0], False, False)
    assert len(replay) == 0  # nothing half-stored
    with pytest.raises(FileExistsError):
        OnlineReplay(tmp_path / "b", obs_dim=2, action_dim=1)
