"""Fitting on real InvertedPendulum-v5 data beats the copy-last-observation predictor."""

import json

import pytest
import torch

from loopwm import load
from loopwm.config import FitConfig
from loopwm.fit import evaluate, fit


def test_loopwm_beats_copy_predictor_on_heldout_k_step_error(pendulum_data, tmp_path):
    cfg = FitConfig(steps=300, batch_size=32, horizon=5, eval_horizon=5, eval_every=0)
    model, result = fit(pendulum_data, model="loopwm", preset="tiny", config=cfg, out=tmp_path)
    held = result["heldout"]
    assert held["windows"] > 50
    assert held["obs_mse_K"] < 0.7 * held["copy_mse_K"]
    assert held["obs_mse_1"] < 0.5 * held["copy_mse_1"]
    assert 1 <= held["iters_mean"] <= model.config.max_iters
    assert result["contraction_bound"] < model.config.c_max
    # the written checkpoint reproduces the reported figures
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["heldout"]["obs_mse_K"] == pytest.approx(held["obs_mse_K"])
    loaded = load(tmp_path / "model.safetensors")
    _, held_out = pendulum_data.split(cfg.holdout_fraction, cfg.seed)
    again = evaluate(loaded, held_out, cfg.eval_horizon)
    assert again["obs_mse_K"] == pytest.approx(held["obs_mse_K"], rel=1e-5)
    assert loaded.checkpoint_extra["env_id"] == "InvertedPendulum-v5"


def test_fit_rejects_unusable_inputs(pendulum_data, tmp_path):
    with pytest.raises(ValueError, match="no held-out episode has 500"):
        fit(pendulum_data, preset="tiny", config=FitConfig(steps=1, eval_horizon=500))
    with pytest.raises(FileNotFoundError):
        fit(tmp_path / "nothing")
    with pytest.raises(ValueError, match="unknown LoopWMConfig"):
        fit(pendulum_data, preset="tiny", model_overrides={"nope": 1})


def test_fixed_ablation_defaults_to_training_mean_iterations(pendulum_data):
    cfg = FitConfig(steps=2, eval_horizon=3, eval_every=0)
    model, result = fit(pendulum_data, model="loopwm-fixed", preset="tiny", config=cfg)
    assert model.config.halting == "fixed"
    assert model.config.max_iters == round(model.config.train_iters_mean)
    assert result["heldout"]["iters_max"] == model.config.max_iters
    torch.testing.assert_close(
        torch.tensor(result["heldout"]["iters_mean"]), torch.tensor(float(model.config.max_iters))
    )


def test_tensorboard_event_file_holds_scalars_histograms_and_video(pendulum_data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = FitConfig(steps=60, batch_size=16, horizon=3, eval_horizon=3, eval_every=30)
    fit(pendulum_data, preset="tiny", config=cfg, logdir=tmp_path / "tb", progress=False)
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0})
    events.Reload()
    tags = events.Tags()
    for key in (
        "wm/loss",
        "wm/obs_loss",
        "loop/iters_mean",
        "eval/obs_mse_K",
        "loop/contraction_bound",
    ):
        assert key in tags["scalars"], key
    assert [e.step for e in events.Scalars("eval/obs_mse_K")] == [30, 60]
    assert "loop/iters" in tags["histograms"]
    assert events.Histograms("loop/iters")[-1].histogram_value.num > 0
    video = events.Images("eval/open_loop_video")
    assert len(video) == 2
    assert video[-1].encoded_image_string[:4] == b"GIF8"  # an animated GIF, not empty
    assert video[-1].width == 3 * 96


def test_an_unusable_out_fails_before_the_fit(pendulum_data, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    cfg = FitConfig(steps=100_000, batch_size=8, horizon=3, eval_horizon=3)  # never runs
    with pytest.raises(ValueError, match="is a file, not a folder"):
        fit(pendulum_data, preset="tiny", config=cfg, out=blocker, progress=False)
    with pytest.raises(ValueError, match="is a file, not a folder"):
        fit(pendulum_data, preset="tiny", config=cfg, out=blocker / "below", progress=False)


def test_a_decoder_free_model_reports_latent_errors_and_refuses_to_decode(pendulum_data, tmp_path):
    from loopwm.envs import DreamEnv
    from loopwm.errors import UnsupportedError
    from loopwm.video import record_rollout

    cfg = FitConfig(steps=20, horizon=3, eval_horizon=3, eval_every=0, loss_weights={"obs": 0})
    model, result = fit(pendulum_data, preset="tiny", config=cfg, out=tmp_path, progress=False)
    held = result["heldout"]
    # no observation errors from a decoder nobody trained: the latent error instead
    assert "obs_mse_1" not in held and "copy_mse_1" not in held
    assert held["latent_mse_1"] > 0 and len(held["latent_mse_by_step"]) == 3
    loaded = load(tmp_path / "model.safetensors")
    assert not model.decodes and not loaded.decodes  # the checkpoint keeps it
    latent = loaded.encode(torch.zeros(1, loaded.config.obs_dim))
    for refused in (
        lambda: loaded.decode(latent),
        lambda: DreamEnv(tmp_path / "model.safetensors"),
        lambda: record_rollout(loaded, "InvertedPendulum-v5", steps=2),
    ):
        with pytest.raises(UnsupportedError, match="decoder-free"):
            refused()
    # what needs no decoder still works: imagined rewards and continuations
    out = loaded.step(latent, torch.zeros(1, loaded.config.action_dim))
    assert torch.isfinite(out.reward).all() and torch.isfinite(out.cont).all()
    # a model trained with its decoder loads as one
    cfg = FitConfig(steps=2, horizon=3, eval_horizon=3, eval_every=0)
    decoded, _ = fit(pendulum_data, preset="tiny", config=cfg, progress=False)
    assert decoded.decodes
