"""On-disk replay: chunks, episode boundaries, terminated vs truncated, held-out split."""

import json

import numpy as np
import pytest

from loopwm.collect import collect
from loopwm.replay import Replay, ReplayWriter


def test_collect_writes_chunks_and_keeps_episode_flags(pendulum_dir, pendulum_data):
    meta = json.loads((pendulum_dir / "meta.json").read_text())
    assert meta["transitions"] == 4000 == len(pendulum_data)
    assert meta["chunks"] == 3  # 1500 + 1500 + 1000: the writer's memory bound
    assert len(list(pendulum_dir.glob("chunk_*.npz"))) == 3
    r = pendulum_data
    ends = r.terminated | r.truncated
    # episode ids change exactly after a terminated or truncated transition
    assert np.array_equal(np.flatnonzero(np.diff(r.episode)), np.flatnonzero(ends[:-1]))
    assert ends[-1]  # the unfinished last episode is marked truncated, not dropped
    assert r.terminated.sum() > 100  # the pendulum falls: terminations are real
    assert not (r.terminated & r.truncated).any()
    # within an episode, next_obs of one transition is the obs of the next
    same = r.episode[1:] == r.episode[:-1]
    assert np.allclose(r.next_obs[:-1][same], r.obs[1:][same])
    assert meta["episodes"] == r.num_episodes


def test_time_limit_truncation_is_kept_apart(tmp_path):
    collect(
        "InvertedPendulum-v5",
        120,
        tmp_path,
        seed=0,
        progress=False,
        env_kwargs={"max_episode_steps": 5},
        policy=lambda obs: np.zeros(1, dtype=np.float32),
    )
    r = Replay.load(tmp_path)
    assert r.truncated.sum() >= 20 and r.terminated.sum() == 0
    lengths = np.bincount(r.episode)
    assert (lengths == 5).all()


def test_split_holds_out_whole_episodes(pendulum_data):
    train, held = pendulum_data.split(0.25, seed=0)
    assert len(train) + len(held) == len(pendulum_data)
    assert not set(train.episode) & set(held.episode)
    assert held.num_episodes == round(0.25 * pendulum_data.num_episodes)


def test_windows_are_masked_at_episode_ends(pendulum_data):
    batch = pendulum_data.sample_sequences(256, 8, np.random.default_rng(0))
    mask = batch["mask"]
    assert mask[:, 0].all() and not mask.all()
    # once a window leaves its episode it never comes back
    assert (np.diff(mask.astype(int), axis=1) <= 0).all()
    # a terminated transition is the last unmasked one in its window
    term = batch["terminated"] & mask
    rows, cols = np.nonzero(term)
    assert all(not mask[r, c + 1 :].any() for r, c in zip(rows, cols, strict=True))
    full = pendulum_data.eval_windows(5, limit=10**6)
    assert full["mask"].all()


def test_writer_refuses_existing_dataset_and_bad_values(tmp_path):
    with ReplayWriter(tmp_path, obs_dim=2, action_dim=1) as w:
        w.add([0, 0], [0], 0.0, [0, 1], False, False)
    with pytest.raises(FileExistsError):
        ReplayWriter(tmp_path, obs_dim=2, action_dim=1)
    w = ReplayWriter(tmp_path / "b", obs_dim=2, action_dim=1)
    with pytest.raises(ValueError, match="non-finite"):
        w.add([0, np.nan], [0], 0.0, [0, 1], False, False)
    with pytest.raises(ValueError, match="2 entries"):
        w.add([0, 0, 0], [0], 0.0, [0, 1], False, False)


def test_corrupt_chunk_is_reported(tmp_path):
    collect("InvertedPendulum-v5", 50, tmp_path, progress=False)
    chunk = next(tmp_path.glob("chunk_*.npz"))
    chunk.write_bytes(chunk.read_bytes()[:100])
    with pytest.raises(ValueError, match="corrupt dataset chunk"):
        Replay.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="no loopwm dataset"):
        Replay.load(tmp_path / "missing")


def test_lost_chunks_are_detected_by_name_on_load_and_on_resume(tmp_path):
    from loopwm.online_replay import OnlineReplay

    collect("InvertedPendulum-v5", 120, tmp_path / "data", chunk_size=30, progress=False)
    (tmp_path / "data" / "chunk_000001.npz").unlink()  # a middle chunk
    with pytest.raises(ValueError, match=r"1 chunk file\(s\) missing \(chunk_000001.npz\)"):
        Replay.load(tmp_path / "data")
    with pytest.raises(ValueError, match="chunk_000001.npz"):
        Replay.episode_ids(tmp_path / "data")

    collect("InvertedPendulum-v5", 120, tmp_path / "run", chunk_size=30, progress=False)
    for chunk in (tmp_path / "run").glob("chunk_*.npz"):  # every chunk gone
        chunk.unlink()
    with pytest.raises(ValueError, match="every chunk file is missing"):
        OnlineReplay.resume(tmp_path / "run")
    collect("InvertedPendulum-v5", 120, tmp_path / "first", chunk_size=30, progress=False)
    (tmp_path / "first" / "chunk_000000.npz").unlink()  # the first one: no restart at 0
    with pytest.raises(ValueError, match="chunk_000000.npz"):
        OnlineReplay.resume(tmp_path / "first")


def test_a_kill_during_a_chunk_write_leaves_the_dataset_as_it_was(tmp_path, monkeypatch):
    writer = ReplayWriter(tmp_path, obs_dim=2, action_dim=1, chunk_size=5)
    for t in range(5):  # the first chunk lands
        writer.add(np.zeros(2), np.zeros(1), 0.0, np.zeros(2), False, t == 4)
    meta = (tmp_path / "meta.json").read_text()

    def killed_mid_write(file, **arrays):
        file.write(b"PK\x03\x04 half a chunk")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", killed_mid_write)
    for _ in range(4):
        writer.add(np.ones(2), np.zeros(1), 1.0, np.ones(2), False, False)
    with pytest.raises(KeyboardInterrupt):
        writer.add(np.ones(2), np.zeros(1), 1.0, np.ones(2), False, True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chunk_000000.npz", "meta.json"]
    assert (tmp_path / "meta.json").read_text() == meta  # no temporary file, no half chunk
    monkeypatch.undo()
    assert len(Replay.load(tmp_path)) == 5
