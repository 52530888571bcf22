"""On-disk replay of real transitions, written in chunks, read back by whole episodes.

Layout of a dataset folder::

    meta.json              env id, sizes, spaces, totals (rewritten atomically)
    chunk_000000.npz       obs, action, reward, next_obs, terminated, truncated, episode
    chunk_000001.npz       ...

Observations are stored flat, as float32, or as uint8 for images (``obs_dtype``, in
meta.json), never widened: an image dataset's chunks are compressed.

The writer keeps at most ``chunk_size`` transitions in memory; every chunk is written to a
temporary file and renamed, so a killed collection leaves only complete chunks. Each
episode has its own id, given when it starts; the transitions of several envs stepped
together (``slot``) interleave in the file and are grouped by episode when read back.
``terminated`` (the MDP ended) and ``truncated`` (a time limit or the end of collection cut
it) are kept apart.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from loopwm.checks import check_choice
from loopwm.errors import ConfigError, ExistsError, MissingError
from loopwm.io import atomic_write, write_json

REPLAY_FORMAT = "loopwm-replay"
REPLAY_VERSION = 1
FIELDS = ("obs", "action", "reward", "next_obs", "terminated", "truncated", "episode")
OBS_DTYPES = ("float32", "uint8")  # flat observations, images


def _write_chunk(path: Path, arrays: dict[str, np.ndarray]) -> None:
    # images compress several times over (and are most of a pixel dataset's bytes)
    save = np.savez_compressed if arrays["obs"].dtype == np.uint8 else np.savez

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            save(fh, **arrays)

    atomic_write(path, write)


def as_obs(obs: Any, dtype: str) -> np.ndarray:
    """One observation as a flat array of the stored ``dtype``: float32, or uint8 for
    images, whose values must already be whole numbers in 0..255 (never wrapped)."""
    arr = np.asarray(obs)
    if dtype == "uint8" and arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
            raise ConfigError(f"image observations must be uint8 pixels, got {arr.dtype}")
        if not (np.isfinite(arr).all() and (arr == np.round(arr)).all()):
            raise ConfigError("image observations must be whole numbers in 0..255")
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise ConfigError(
                f"image observations must lie in 0..255, got {arr.min()}..{arr.max()}"
            )
    return arr.reshape(-1).astype(dtype, copy=False)


class TransitionColumns:
    """Transitions accumulated in memory column by column (``data[field]`` is a list)."""

    def __init__(self, obs_dtype: str = "float32") -> None:
        self.obs_dtype = obs_dtype
        self.data: dict[str, list] = {k: [] for k in FIELDS}

    def __len__(self) -> int:
        return len(self.data["reward"])

    def append(self, obs, action, reward, next_obs, terminated, truncated, episode) -> None:
        d = self.data
        d["obs"].append(as_obs(obs, self.obs_dtype))
        d["action"].append(np.asarray(action, dtype=np.float32).reshape(-1))
        d["reward"].append(float(reward))
        d["next_obs"].append(as_obs(next_obs, self.obs_dtype))
        d["terminated"].append(bool(terminated))
        d["truncated"].append(bool(truncated))
        d["episode"].append(int(episode))

    def arrays(self) -> dict[str, np.ndarray]:
        """The columns as arrays with the dtypes of a stored chunk."""
        d = self.data
        return {
            "obs": np.stack(d["obs"]),
            "action": np.stack(d["action"]),
            "reward": np.asarray(d["reward"], dtype=np.float32),
            "next_obs": np.stack(d["next_obs"]),
            "terminated": np.asarray(d["terminated"], dtype=bool),
            "truncated": np.asarray(d["truncated"], dtype=bool),
            "episode": np.asarray(d["episode"], dtype=np.int64),
        }


class ReplayWriter:
    """Append transitions to a dataset folder, one chunk file per ``chunk_size`` of them.

    Args:
        root: dataset folder (created; must not already hold a dataset).
        obs_dim, action_dim: sizes of the flat observation and action vectors.
        meta: extra JSON-serialisable facts to store (env id, spaces, policy, seed).
        chunk_size: transitions per chunk file, the writer's memory bound.
        obs_dtype: ``float32``, or ``uint8`` for images (stored as pixels, compressed).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        obs_dim: int,
        action_dim: int,
        meta: dict[str, Any] | None = None,
        chunk_size: int = 10_000,
        obs_dtype: str = "float32",
    ) -> None:
        self.root = Path(root)
        if not (self.root / "meta.json").exists() and any(self.root.glob("chunk_*.npz")):
            raise ConfigError(
                f"{self.root} holds chunk files but no meta.json: the dataset's meta.json is "
                f"missing (restore it, or choose another folder)"
            )
        if (self.root / "meta.json").exists():
            raise ExistsError(f"{self.root} already holds a dataset; choose another folder")
        if chunk_size < 1:
            raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")
        check_choice("obs_dtype", obs_dtype, OBS_DTYPES)
        self.root.mkdir(parents=True, exist_ok=True)
        self.obs_dim, self.action_dim, self.chunk_size = obs_dim, action_dim, chunk_size
        self.obs_dtype = obs_dtype
        self.meta = {
            "format": REPLAY_FORMAT,
            "version": REPLAY_VERSION,
            "obs_dim": obs_dim,
            "action_dim": action_dim,
            "obs_dtype": obs_dtype,
            "chunk_size": chunk_size,
            **(meta or {}),
            "transitions": 0,
            "episodes": 0,
            "chunks": 0,
        }
        self._buffer = TransitionColumns(obs_dtype)
        self._next_id = 0  # id of the next episode to start
        self._open: dict[int, int] = {}  # slot -> id of its unfinished episode
        self._closed = 0  # episodes that ended (terminated or truncated)
        self._written = 0
        self._chunks = 0
        write_json(self.root / "meta.json", self.meta)

    @classmethod
    def reopen(cls, root: str | os.PathLike) -> ReplayWriter:
        """Continue writing to an existing dataset folder (after a killed process).

        The chunks on disk are the truth (meta.json is rewritten from them). Episodes left
        unfinished by the killed writer (one per env slot) are closed as truncated: their
        environment state is gone, so new transitions start new episodes.
        """
        root = Path(root)
        meta = _read_meta(root)
        writer = cls.__new__(cls)
        writer.root = root
        writer.obs_dtype = meta_obs_dtype(meta)
        writer._buffer = TransitionColumns(writer.obs_dtype)
        writer._open = {}
        if not any(root.glob("chunk_*.npz")):  # killed before its first chunk
            if int(meta.get("chunks", 0)) > 0:
                raise ConfigError(
                    f"{root}: every chunk file is missing; meta.json counts {meta['chunks']} "
                    f"chunks and {meta.get('transitions')} transitions"
                )
            writer.obs_dim, writer.action_dim = meta["obs_dim"], meta["action_dim"]
            writer.chunk_size = int(meta.get("chunk_size", 10_000))
            writer.meta = meta
            writer._chunks = writer._written = writer._next_id = writer._closed = 0
            return writer
        replay = Replay.load(root)  # validates every chunk
        chunks = sorted(root.glob("chunk_*.npz"))
        writer.obs_dim, writer.action_dim = replay.obs_dim, replay.action_dim
        writer.chunk_size = int(replay.meta.get("chunk_size", 10_000))
        writer.meta = dict(replay.meta)
        writer._chunks = int(chunks[-1].stem.split("_")[1]) + 1
        writer._written = len(replay)
        _close_open_episodes(chunks)
        writer._next_id = int(replay.episode.max()) + 1
        writer._closed = replay.num_episodes
        writer.meta.update(transitions=writer._written, chunks=len(chunks), episodes=writer._closed)
        write_json(root / "meta.json", writer.meta)
        return writer

    @property
    def written(self) -> int:
        """Transitions in chunk files on disk (the buffered ones not counted)."""
        return self._written

    @property
    def closed_episodes(self) -> int:
        """Episodes that have ended (terminated or truncated), written or buffered."""
        return self._closed

    def add(
        self, obs, action, reward, next_obs, terminated: bool, truncated: bool, *, slot: int = 0
    ) -> int:
        """Store one transition of the env in ``slot`` (envs stepped together use one slot
        each); ``terminated or truncated`` ends that slot's episode. Returns the
        transition's episode id. A full buffer is written as a chunk."""
        episode = self._append(obs, action, reward, next_obs, terminated, truncated, slot)
        if len(self._buffer) >= self.chunk_size:
            self.flush()
        return episode

    def add_batch(self, obs, action, reward, next_obs, terminated, truncated) -> np.ndarray:
        """Store one transition per env of a vector env (row ``i`` is slot ``i``), all in
        the same chunk, so that a chunk holds whole steps of the vector env. Returns the
        episode id of each row."""
        rows = len(reward)
        episodes = np.empty(rows, np.int64)
        for i in range(rows):
            episodes[i] = self._append(
                obs[i], action[i], reward[i], next_obs[i], terminated[i], truncated[i], i
            )
        if len(self._buffer) >= self.chunk_size:
            self.flush()
        return episodes

    def _append(self, obs, action, reward, next_obs, terminated, truncated, slot) -> int:
        obs, next_obs = as_obs(obs, self.obs_dtype), as_obs(next_obs, self.obs_dtype)
        action = np.asarray(action, dtype=np.float32).reshape(-1)
        if obs.shape != (self.obs_dim,) or next_obs.shape != (self.obs_dim,):
            raise ConfigError(f"observations must have {self.obs_dim} entries, got {obs.shape}")
        if action.shape != (self.action_dim,):
            raise ConfigError(f"actions must have {self.action_dim} entries, got {action.shape}")
        reward = float(reward)
        finite = np.isfinite(obs).all() and np.isfinite(next_obs).all()
        if not (finite and np.isfinite(action).all() and np.isfinite(reward)):
            raise ConfigError(
                f"non-finite value in transition {self._written + len(self._buffer)} "
                f"(env slot {slot}); refusing to store it"
            )
        episode = self._open.get(slot)
        if episode is None:
            episode = self._open[slot] = self._next_id
            self._next_id += 1
        self._buffer.append(obs, action, reward, next_obs, terminated, truncated, episode)
        if terminated or truncated:
            del self._open[slot]
            self._closed += 1
        return episode

    def flush(self) -> None:
        """Write buffered transitions as one chunk file and update meta.json."""
        if len(self._buffer) == 0:
            return
        arrays = self._buffer.arrays()
        _write_chunk(self.root / f"chunk_{self._chunks:06d}.npz", arrays)
        self._chunks += 1
        self._written += len(arrays["reward"])
        self._buffer = TransitionColumns(self.obs_dtype)
        episodes = self._closed + len(self._open)
        self.meta.update(transitions=self._written, chunks=self._chunks, episodes=episodes)
        write_json(self.root / "meta.json", self.meta)

    def close(self) -> None:
        """Mark every unfinished episode's last transition as truncated and flush."""
        columns = self._buffer.data
        last = {episode: row for row, episode in enumerate(columns["episode"])}
        for slot, episode in list(self._open.items()):
            if episode in last:
                columns["truncated"][last[episode]] = True
                del self._open[slot]
                self._closed += 1
        self.flush()
        if self._open:  # their last transitions are in the newest chunk, already written
            _close_open_episodes([self.root / f"chunk_{self._chunks - 1:06d}.npz"])
            self._closed += len(self._open)
            self._open = {}
            self.meta.update(episodes=self._closed)
            write_json(self.root / "meta.json", self.meta)

    def __enter__(self) -> ReplayWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class Replay:
    """Transitions of whole episodes in memory, as flat arrays sorted by episode.

    ``episode_end[i]`` is the index of the last transition of transition ``i``'s episode.
    """

    obs: np.ndarray  # (N, obs_dim) float32, or uint8 for images
    action: np.ndarray  # (N, action_dim) float32
    reward: np.ndarray  # (N,) float32
    next_obs: np.ndarray  # (N, obs_dim) like obs
    terminated: np.ndarray  # (N,) bool
    truncated: np.ndarray  # (N,) bool
    episode: np.ndarray  # (N,) int64
    meta: dict[str, Any]

    def __post_init__(self) -> None:
        self.episode_end = episode_ends(self.episode)  # (N,)

    @property
    def obs_dim(self) -> int:
        return self.obs.shape[1]

    @property
    def action_dim(self) -> int:
        return self.action.shape[1]

    def __len__(self) -> int:
        return len(self.reward)

    @property
    def num_episodes(self) -> int:
        return len(np.unique(self.episode))

    @classmethod
    def load(cls, root: str | os.PathLike, *, episodes: np.ndarray | None = None) -> Replay:
        """Read a dataset folder written by :class:`ReplayWriter`.

        Args:
            episodes: keep only these episode ids (a shard); only they are held in memory.
        """
        root = Path(root)
        meta = _read_meta(root)
        parts: dict[str, list[np.ndarray]] = {k: [] for k in FIELDS}
        for path in _chunk_paths(root, meta):
            with _open_chunk(path) as data:
                columns = _check_chunk(path, {k: data[k] for k in FIELDS}, meta)
                keep = None if episodes is None else np.isin(columns["episode"], episodes)
                for k in FIELDS:
                    parts[k].append(columns[k] if keep is None else columns[k][keep])
        arrays = {k: np.concatenate(v) for k, v in parts.items()}
        if np.any(np.diff(arrays["episode"]) < 0):  # envs stepped together interleave
            order = np.argsort(arrays["episode"], kind="stable")  # keeps each episode's order
            arrays = {k: v[order] for k, v in arrays.items()}
        return cls(**arrays, meta=meta)

    @staticmethod
    def count(root: str | os.PathLike) -> int:
        """Transitions stored in a dataset folder, reading only each chunk's reward column
        (0 for a folder without chunks yet, e.g. a run killed before its first one)."""
        root = Path(root)
        if not any(root.glob("chunk_*.npz")):
            return 0
        meta = _read_meta(root)
        total = 0
        for path in _chunk_paths(root, meta):
            with _open_chunk(path) as data:
                total += len(data["reward"])
        return total

    @staticmethod
    def episode_ids(root: str | os.PathLike) -> np.ndarray:
        """The episode ids of a dataset folder, reading only that column of each chunk."""
        root = Path(root)
        meta = _read_meta(root)
        ids = []
        for path in _chunk_paths(root, meta):
            with _open_chunk(path) as data:
                ids.append(np.unique(data["episode"]))
        return np.unique(np.concatenate(ids))

    def select_episodes(self, episodes: np.ndarray) -> Replay:
        """The sub-replay holding exactly the given episode ids."""
        keep = np.isin(self.episode, episodes)
        return Replay(**{k: getattr(self, k)[keep] for k in FIELDS}, meta=dict(self.meta))

    def split(self, holdout_fraction: float, seed: int) -> tuple[Replay, Replay]:
        """Split by whole episodes into ``(train, heldout)``; at least one episode each."""
        train, heldout = split_episode_ids(np.unique(self.episode), holdout_fraction, seed)
        return self.select_episodes(train), self.select_episodes(heldout)

    def sample_sequences(self, batch_size: int, horizon: int, rng: np.random.Generator) -> dict:
        """Random windows of ``horizon`` transitions, masked past the end of the episode."""
        start = rng.integers(0, len(self), size=batch_size)
        return self._windows(start, horizon)

    def eval_windows(self, horizon: int, limit: int, seed: int = 0) -> dict:
        """Windows of ``horizon`` transitions that lie entirely inside one episode (at most
        ``limit`` of them, chosen with ``seed``)."""
        starts = np.flatnonzero(np.arange(len(self)) + horizon - 1 <= self.episode_end)
        if len(starts) == 0:
            raise ConfigError(
                f"no held-out episode has {horizon} transitions; lower the evaluation "
                f"horizon or collect longer episodes"
            )
        if len(starts) > limit:
            starts = np.sort(np.random.default_rng(seed).choice(starts, limit, replace=False))
        return self._windows(starts, horizon)

    def _windows(self, start: np.ndarray, horizon: int) -> dict:
        return windows(self, start, self.episode_end[start], horizon)


def episode_ends(episode: np.ndarray) -> np.ndarray:
    """For each transition, the index of the last transition of its episode (episode ids
    are contiguous runs)."""
    n = len(episode)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.flatnonzero(np.diff(episode) != 0)
    last = np.append(ends, n - 1)
    first = np.insert(ends + 1, 0, 0)
    return np.repeat(last, last - first + 1).astype(np.int64)


def split_episode_ids(
    ids: np.ndarray, holdout_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(train_ids, heldout_ids)``: a seeded permutation of whole episodes."""
    if len(ids) < 2:
        raise ConfigError("need at least 2 episodes to hold some out; collect more steps")
    perm = np.random.default_rng(seed).permutation(ids)
    n_held = min(max(1, round(holdout_fraction * len(ids))), len(ids) - 1)
    return perm[n_held:], perm[:n_held]


def _close_open_episodes(chunks: list[Path]) -> None:
    """Mark the last stored transition of every unfinished episode as truncated,
    rewriting (atomically) only the chunks that hold one."""
    last: dict[int, tuple[int, int, bool]] = {}  # episode -> (chunk, row, ended)
    for number, path in enumerate(chunks):
        with _open_chunk(path) as data:
            ended = data["terminated"] | data["truncated"]
            episode = data["episode"]
        ids, from_end = np.unique(episode[::-1], return_index=True)
        for eid, row in zip(ids.tolist(), (len(episode) - 1 - from_end).tolist(), strict=True):
            last[eid] = (number, row, bool(ended[row]))
    rows: dict[int, list[int]] = {}
    for number, row, ended in last.values():
        if not ended:
            rows.setdefault(number, []).append(row)
    for number, open_rows in rows.items():
        with np.load(chunks[number], allow_pickle=False) as data:
            arrays = {k: data[k] for k in FIELDS}
        arrays["truncated"][open_rows] = True
        _write_chunk(chunks[number], arrays)


def _read_meta(root: Path) -> dict[str, Any]:
    meta_path = root / "meta.json"
    if not meta_path.is_file():
        raise MissingError(f"{root} holds no loopwm dataset (no meta.json)")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{meta_path}: invalid JSON ({err})") from None
    if meta.get("format") != REPLAY_FORMAT or meta.get("version") != REPLAY_VERSION:
        raise ConfigError(f"{meta_path}: not a loopwm replay of version {REPLAY_VERSION}")
    if meta.get("obs_dtype", "float32") not in OBS_DTYPES:
        raise ConfigError(f"{meta_path}: obs_dtype must be one of {OBS_DTYPES}")
    return meta


def meta_obs_dtype(meta: dict[str, Any]) -> str:
    """The stored observations' dtype (datasets written before images: float32)."""
    return meta.get("obs_dtype", "float32")


def meta_image_shape(meta: dict[str, Any]) -> tuple[int, ...]:
    """``(H, W, C)`` of a dataset of images (uint8 observations of a rank-3 space), else
    ``()``: what a model fitted on it needs as ``image_shape``."""
    shape = tuple(meta.get("observation_space", {}).get("shape", ()))
    if meta_obs_dtype(meta) == "uint8" and len(shape) == 3:
        return shape
    if meta_obs_dtype(meta) == "uint8":
        raise ConfigError(
            f"the dataset stores uint8 observations but its meta.json names no (H, W, C) "
            f"observation space (got shape {list(shape)})"
        )
    return ()


def _chunk_paths(root: Path, meta: dict[str, Any]) -> list[Path]:
    """The dataset's chunk files, checked against meta.json: none may be missing.

    meta.json is rewritten after each chunk, so a kill in between leaves one chunk more
    than it counts (kept); fewer, or a gap in the numbering, means chunks were lost.
    """
    chunks = sorted(root.glob("chunk_*.npz"))
    if not chunks:
        raise ConfigError(f"{root}: dataset has no chunks (was the collection empty?)")
    try:
        numbers = [int(path.stem.split("_")[1]) for path in chunks]
    except (IndexError, ValueError):
        raise ConfigError(f"{root}: unexpected chunk file names {chunks[:3]}") from None
    count = max(numbers[-1] + 1, int(meta.get("chunks", 0)))
    missing = sorted(set(range(count)) - set(numbers))
    if missing:
        names = ", ".join(f"chunk_{n:06d}.npz" for n in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise ConfigError(
            f"{root}: {len(missing)} chunk file(s) missing ({names}{more}); meta.json counts "
            f"{meta.get('chunks')} chunks and {meta.get('transitions')} transitions"
        )
    return chunks


@contextmanager
def _open_chunk(path: Path) -> Iterator[Any]:
    """A chunk's arrays, read lazily per column; corrupt files raise ValueError."""
    if not zipfile.is_zipfile(path):  # np.load would guess "pickled data" for any bytes
        raise ConfigError(f"{path}: corrupt dataset chunk (not a numpy .npz archive)")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ConfigError(f"{path}: corrupt dataset chunk ({err})") from None
    with data:
        yield _CheckedChunk(data, path)


class _CheckedChunk:
    def __init__(self, data: Any, path: Path) -> None:
        self.data, self.path = data, path

    def __getitem__(self, key: str) -> np.ndarray:
        try:
            return self.data[key]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            raise ConfigError(f"{self.path}: corrupt dataset chunk ({err})") from None


def _check_chunk(path: Path, columns: dict[str, np.ndarray], meta: dict) -> dict:
    """A chunk's columns if they agree with meta.json and each other and hold only finite
    values; otherwise an error naming the chunk and what is wrong."""
    rows = len(columns["reward"])
    shapes = {
        "obs": (rows, meta["obs_dim"]),
        "next_obs": (rows, meta["obs_dim"]),
        "action": (rows, meta["action_dim"]),
        "terminated": (rows,),
        "truncated": (rows,),
        "episode": (rows,),
    }
    for name, shape in shapes.items():
        if columns[name].shape != shape:
            raise ConfigError(
                f"{path}: {name} has shape {columns[name].shape}, meta.json and the chunk's "
                f"{rows} rewards imply {shape}"
            )
    for name in ("obs", "next_obs"):
        if columns[name].dtype != meta_obs_dtype(meta):
            raise ConfigError(
                f"{path}: {name} is {columns[name].dtype}, meta.json says {meta_obs_dtype(meta)}"
            )
    for name in ("obs", "action", "reward", "next_obs"):
        if not np.isfinite(columns[name]).all():
            raise ConfigError(f"{path}: {name} holds NaN or inf values")
    return columns


def windows(columns: Any, start: np.ndarray, end: np.ndarray, horizon: int) -> dict:
    """Windows of ``horizon`` transitions from ``start`` (B,), masked past ``end`` (B,), the
    index of the last stored transition of each start's episode. ``columns`` has the
    transition arrays as attributes (a :class:`Replay` or an online replay)."""
    idx = start[:, None] + np.arange(horizon)[None, :]  # (B, H)
    end = end[:, None]  # (B, 1)
    mask = idx <= end
    return gather_windows(columns, np.minimum(idx, end), mask)


def gather_windows(columns: Any, idx: np.ndarray, mask: np.ndarray) -> dict:
    """The training batch of windows whose transitions are at ``idx`` (B, H); ``mask``
    (B, H) is False past an episode's last stored transition (``idx`` repeats it there)."""
    return {
        "obs0": columns.obs[idx[:, 0]],  # (B, O)
        "action": columns.action[idx],  # (B, H, A)
        "next_obs": columns.next_obs[idx],  # (B, H, O)
        "reward": columns.reward[idx],  # (B, H)
        "terminated": columns.terminated[idx],  # (B, H)
        "mask": mask,  # (B, H)
    }
