"""Checkpoints: bit-exact round trip, atomic writes, clear errors, never unpickle."""

import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

from loopwm import MODEL_NAMES, CheckpointError, build_model, load, save
from loopwm.checkpoint import FORMAT, read_header


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_round_trip_is_bit_exact(name, tiny_config, tmp_path):
    torch.manual_seed(0)
    model = build_model(name, tiny_config)
    model.set_obs_normalizer([1.0, 2, 3, 4, 5], [0.5, 1, 2, 3, 4])
    path = tmp_path / "m.safetensors"
    save(model, path, extra={"env_id": "X-v0"})
    loaded = load(path)
    assert type(loaded) is type(model) and loaded.config == model.config
    assert not loaded.training
    for (k, a), (k2, b) in zip(
        model.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert k == k2 and torch.equal(a, b)
    model.eval()
    h = torch.randn(4, 5)
    a = torch.rand(4, 2)
    with torch.no_grad():
        out1 = model.step(model.encode(h), a)
        out2 = loaded.step(loaded.encode(h), a)
    assert torch.equal(out1.latent, out2.latent) and torch.equal(out1.iters, out2.iters)
    assert loaded.checkpoint_extra == {"env_id": "X-v0"}
    assert not list(tmp_path.glob(".*tmp"))  # no temp file left behind


def test_truncated_file(tiny_model, tmp_path):
    path = tmp_path / "m.safetensors"
    save(tiny_model, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=str(path.name)):
        load(path)


def test_garbage_file(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"\x00\x01not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match="junk.safetensors"):
        load(path)


def test_pickle_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "executed"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(CheckpointError, match="pickle"):
        load(path)
    torch.save({"x": torch.zeros(1)}, tmp_path / "torch.pt")
    with pytest.raises(CheckpointError, match="unpickle"):
        load(tmp_path / "torch.pt")
    assert not marker.exists()


def test_mismatched_weights_and_config(tiny_model, tiny_config, tmp_path):
    path = tmp_path / "m.safetensors"
    save(tiny_model, path)
    header = read_header(path)
    bigger = build_model("loopwm", tiny_config.replace(latent_dim=24))
    tensors = {k: v.contiguous() for k, v in bigger.state_dict().items()}
    meta = {
        "format": FORMAT,
        "format_version": "1",
        "kind": "loopwm",
        "config": json.dumps(header["config"].to_dict()),
        "extra": "{}",
    }
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(CheckpointError, match="shape"):
        load(path)
    save_file(tensors, str(path), metadata={**meta, "kind": "gru"})
    with pytest.raises(CheckpointError, match="do not match"):
        load(path)
    save_file(tensors, str(path), metadata={**meta, "format_version": "99"})
    with pytest.raises(CheckpointError, match="version 99"):
        load(path)
    save_file(tensors, str(path), metadata={"format": "something-else"})
    with pytest.raises(CheckpointError, match="header"):
        load(path)
    right = {k: v.contiguous() for k, v in tiny_model.state_dict().items()}
    save_file(right, str(path), metadata={**meta, "extra": '{"decoder": "no"}'})
    with pytest.raises(CheckpointError, match="decoder must be true or false"):
        load(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "nope.safetensors")


def test_failed_write_keeps_previous_checkpoint(tiny_model, tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    save(tiny_model, path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("loopwm.checkpoint.save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        save(tiny_model, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_a_small_file_cannot_make_the_loader_build_a_huge_model(tiny_model, tmp_path):
    """The header's config is checked against the tensors' shapes before anything is
    allocated: its 1e5-wide layers would need 40 GB each (building them would fail with an
    allocation error, or swap), the file holds a few kilobytes."""
    path = tmp_path / "huge.safetensors"
    save(tiny_model, path)
    header = read_header(path)
    tensors = {k: v.contiguous() for k, v in tiny_model.state_dict().items()}
    huge = header["config"].replace(latent_dim=100_000, hidden_dim=100_000)
    meta = {
        "format": FORMAT,
        "format_version": "2",
        "kind": "loopwm",
        "config": json.dumps(huge.to_dict()),
        "extra": "{}",
    }
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(CheckpointError, match="the config implies"):
        load(path)
    assert path.stat().st_size < 100_000


def test_fuzzed_headers_give_a_model_or_a_checkpoint_error(tiny_model, tmp_path):
    """Random header configs over a real file's tensors: every load ends in a valid model
    or a CheckpointError, quickly (nothing large is ever built)."""
    import random
    import time

    from loopwm.models import MODEL_NAMES, model_family

    tensors = {k: v.contiguous() for k, v in tiny_model.state_dict().items()}
    base = tiny_model.config.to_dict()
    rng = random.Random(0)
    values = [0, 1, 2, 3, 16, 32, 10**3, 10**6, 10**9, -1, 0.5, "x", None, [1], True]
    outcomes = {"model": 0, "error": 0}
    started = time.perf_counter()
    for trial in range(150):
        config = dict(base)
        for key in rng.sample(sorted(config), k=rng.randint(1, 4)):
            config[key] = rng.choice(values)
        if rng.random() < 0.2:
            config[f"field_{trial}"] = 1
        kind = rng.choice([*MODEL_NAMES, "nonsense"])
        kind = model_family(kind).cls.kind if kind in MODEL_NAMES else kind
        version = rng.choice(["2", "2", "2", "1", "x", "99"])
        meta = {"format": FORMAT, "format_version": version, "kind": kind, "extra": "{}"}
        meta["config"] = json.dumps(config) if rng.random() < 0.9 else "{not json"
        path = tmp_path / f"fuzz{trial}.safetensors"
        save_file(tensors, str(path), metadata=meta)
        try:
            load(path)
            outcomes["model"] += 1
        except CheckpointError:
            outcomes["error"] += 1
    assert outcomes["error"] > 100 and time.perf_counter() - started < 60
