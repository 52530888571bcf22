"""The replay an agent appends to while it trains: bounded in memory, complete on disk.

Every transition goes to a dataset folder through :class:`~loopwm.replay.ReplayWriter`
(chunk files written atomically, readable by ``loopwm fit``), and to in-memory arrays that
the training batches are drawn from. Memory holds at most ``capacity`` transitions; past
that the oldest ones are dropped from memory only. :meth:`OnlineReplay.resume` rebuilds
the replay of a killed run from its folder, so nothing that reached the disk is lost.

Several envs stepped together (``add_batch``) interleave in memory as on disk; each stored
transition links to the next one of its episode, and training windows follow those links.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from loopwm.checks import check_positive_int
from loopwm.errors import ConfigError
from loopwm.replay import FIELDS, Replay, ReplayWriter, gather_windows

DTYPES = {
    "reward": np.float32,
    "terminated": bool,
    "truncated": bool,
    "episode": np.int64,
}


class OnlineReplay:
    """Transitions of a running agent, sampled as open-loop windows for model training.

    Args:
        root: dataset folder (created; must be new; use :meth:`resume` for an old one).
        obs_dim, action_dim: sizes of the flat observation and action vectors.
        meta: JSON-serialisable facts stored with the dataset (env id, spaces, seed).
        capacity: transitions kept in memory (the oldest are dropped from memory first).
        chunk_size: transitions per chunk file; :meth:`flush` writes a partial chunk.
        obs_dtype: ``float32``, or ``uint8`` for images (kept as pixels in memory too).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        obs_dim: int,
        action_dim: int,
        meta: dict[str, Any] | None = None,
        capacity: int = 1_000_000,
        chunk_size: int = 1000,
        obs_dtype: str = "float32",
    ) -> None:
        writer = ReplayWriter(
            root,
            obs_dim=obs_dim,
            action_dim=action_dim,
            meta=meta,
            chunk_size=chunk_size,
            obs_dtype=obs_dtype,
        )
        self._setup(writer, capacity)

    @classmethod
    def resume(cls, root: str | os.PathLike, *, capacity: int = 1_000_000) -> OnlineReplay:
        """Reopen the folder of a killed run: every stored transition comes back (the last
        ``capacity`` into memory) and new ones are appended to the same folder."""
        writer = ReplayWriter.reopen(root)
        replay = cls.__new__(cls)
        replay._setup(writer, capacity)
        if writer.written == 0:
            return replay  # killed before its first chunk: nothing to read back
        stored = Replay.load(root)  # after reopen: every episode is closed, and contiguous
        keep = slice(max(0, len(stored) - capacity), len(stored))
        for name in FIELDS:
            replay._extend(name, getattr(stored, name)[keep])
        replay._size = len(stored.reward[keep])
        replay._total = len(stored)
        index = np.arange(replay._size)
        replay._next = np.where(stored.episode_end[keep] - keep.start > index, index + 1, -1)
        return replay

    def _setup(self, writer: ReplayWriter, capacity: int) -> None:
        check_positive_int("capacity", capacity)
        self.writer = writer
        self.root = Path(writer.root)
        self.capacity = capacity
        self.obs_dim, self.action_dim = writer.obs_dim, writer.action_dim
        self._arrays: dict[str, np.ndarray] = {
            "obs": np.zeros((0, self.obs_dim), writer.obs_dtype),
            "action": np.zeros((0, self.action_dim), np.float32),
            "next_obs": np.zeros((0, self.obs_dim), writer.obs_dtype),
            **{k: np.zeros(0, dtype) for k, dtype in DTYPES.items()},
        }
        self._next = np.zeros(0, np.int64)  # memory index of the episode's next transition
        self._last: dict[int, int] = {}  # slot -> memory index of its open episode's newest
        self._size = 0  # transitions in memory
        self._total = 0  # transitions stored since the folder was created

    # ------------------------------------------------------------------ columns
    @property
    def meta(self) -> dict[str, Any]:
        return self.writer.meta

    def __getattr__(self, name: str) -> np.ndarray:
        # obs, action, reward, ... as views of the filled part (what ``windows`` reads).
        if name in FIELDS:
            return self.__dict__["_arrays"][name][: self.__dict__["_size"]]
        raise AttributeError(name)

    def __len__(self) -> int:
        """Transitions in memory (what batches are drawn from)."""
        return self._size

    @property
    def episodes(self) -> int:
        """Episodes closed so far (terminated or truncated), including those on disk only."""
        return self.writer.closed_episodes

    @property
    def total(self) -> int:
        """Every transition stored in the folder, including those dropped from memory."""
        return self._total

    # ------------------------------------------------------------------ writing
    def add(self, obs, action, reward, next_obs, terminated: bool, truncated: bool) -> None:
        """Store one transition of a single env (validated by the writer: shapes, finite
        values)."""
        episode = self.writer.add(obs, action, reward, next_obs, terminated, truncated)
        self._store(0, obs, action, reward, next_obs, terminated, truncated, episode)

    def add_batch(self, obs, action, reward, next_obs, terminated, truncated) -> None:
        """Store one transition per env of a vector env: row ``i`` of each array (N, ...)
        continues env ``i``'s episode."""
        episodes = self.writer.add_batch(obs, action, reward, next_obs, terminated, truncated)
        for i, episode in enumerate(episodes):
            self._store(
                i, obs[i], action[i], reward[i], next_obs[i], terminated[i], truncated[i], episode
            )

    def _store(self, slot, obs, action, reward, next_obs, terminated, truncated, episode):
        if self._size == len(self._arrays["reward"]):
            self._grow()
        i = self._size
        a = self._arrays
        a["obs"][i] = np.asarray(obs).reshape(-1)  # checked and cast by the writer
        a["action"][i] = np.asarray(action, np.float32).reshape(-1)
        a["next_obs"][i] = np.asarray(next_obs).reshape(-1)
        a["reward"][i] = reward
        a["terminated"][i] = terminated
        a["truncated"][i] = truncated
        a["episode"][i] = episode
        self._next[i] = -1
        previous = self._last.pop(slot, None)
        if previous is not None:
            self._next[previous] = i
        if not (terminated or truncated):
            self._last[slot] = i
        self._size += 1
        self._total += 1

    def flush(self) -> None:
        """Write every transition still buffered by the writer (a checkpoint calls this)."""
        self.writer.flush()

    def close(self) -> None:
        """Flush, closing an unfinished episode as truncated on disk."""
        self.writer.close()

    def _grow(self) -> None:
        if self._size >= self.capacity:
            self._evict(max(1, self.capacity // 10))
            if self._size < len(self._arrays["reward"]):
                return
        new = min(self.capacity, max(1024, 2 * len(self._arrays["reward"])))
        for name, array in self._arrays.items():
            grown = np.zeros((new, *array.shape[1:]), array.dtype)
            grown[: self._size] = array[: self._size]
            self._arrays[name] = grown
        grown = np.full(new, -1, np.int64)
        grown[: self._size] = self._next[: self._size]
        self._next = grown

    def _evict(self, count: int) -> None:
        """Drop the ``count`` oldest transitions from memory (they stay on disk)."""
        keep = self._size - count
        for array in self._arrays.values():
            array[:keep] = array[count : self._size]
        links = self._next[count : self._size]
        self._next[:keep] = np.where(links >= 0, links - count, -1)  # links point forward
        self._size = keep
        self._last = {slot: i - count for slot, i in self._last.items() if i >= count}

    def _extend(self, name: str, values: np.ndarray) -> None:
        self._arrays[name] = np.array(values, dtype=self._arrays[name].dtype)

    # ------------------------------------------------------------------ sampling
    def sample_sequences(self, batch_size: int, horizon: int, rng: np.random.Generator) -> dict:
        """Random windows of ``horizon`` transitions, masked past each episode's end (an
        open episode ends at its newest transition)."""
        if self._size == 0:
            raise ConfigError("the replay is empty; store transitions before sampling")
        idx = np.empty((batch_size, horizon), np.int64)
        mask = np.ones((batch_size, horizon), bool)
        idx[:, 0] = rng.integers(0, self._size, size=batch_size)
        for t in range(1, horizon):
            following = self._next[idx[:, t - 1]]
            mask[:, t] = mask[:, t - 1] & (following >= 0)
            idx[:, t] = np.where(mask[:, t], following, idx[:, t - 1])
        return gather_windows(self, idx, mask)

    def sample_obs(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """``batch_size`` stored observations drawn uniformly (states an agent acted from)."""
        if self._size == 0:
            raise ConfigError("the replay is empty; store transitions before sampling")
        return self.obs[rng.integers(0, self._size, size=batch_size)]  # (B, O)
