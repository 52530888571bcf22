"""`loopwm video`: three panels, the expected frames, and an imagined panel that is the
model's own (it departs from the real one once the model is wrong)."""

import imageio.v3 as iio
import numpy as np
import pytest

from loopwm import LoopWM, LoopWMConfig, load, save
from loopwm.cli import main
from loopwm.video import record_rollout, write_video


def test_video_command_writes_three_panel_mp4(pendulum_checkpoint, tmp_path, capsys):
    out = tmp_path / "pendulum.mp4"
    command = [
        "video",
        "--checkpoint",
        str(pendulum_checkpoint),
        "--out",
        str(out),
        "--steps",
        "12",
        "--resync",
        "5",
        "--size",
        "64",
    ]
    assert main(command) == 0
    frames = iio.imread(out)
    assert frames.shape == (13, 64, 3 * 64, 3)  # reset frame + one per step, 3 panels
    assert "loop iterations mean" in capsys.readouterr().out
    assert main([*command, "--gif"]) == 0
    gif = iio.imread(out.with_suffix(".gif"))
    assert gif.shape[:3] == (13, 64, 3 * 64)


def test_imagined_panel_departs_from_real_when_the_model_is_wrong(tmp_path):
    model = LoopWM(LoopWMConfig.preset("tiny", obs_dim=4, action_dim=1))  # untrained
    frames, trace = record_rollout(
        model,
        "InvertedPendulum-v5",
        steps=8,
        resync_every=100,
        size=64,
        seed=0,
        policy=lambda obs: np.zeros(1),  # the pole stays up: no episode end, no re-sync
    )

    def panels(frame):  # real and imagined panels without their labels and border
        return frame[30:-4, 4:60].astype(int), frame[30:-4, 68:124].astype(int)

    real, imagined = panels(frames[0])
    assert np.abs(real - imagined).mean() < 1  # both start from the same real state
    real, imagined = panels(frames[-1])
    assert np.abs(real - imagined).mean() > 1
    assert trace.error[-1] > 0 and (trace.iters >= 1).all()
    assert trace.resync[0] and not trace.resync[1:].any()
    np.testing.assert_array_equal(trace.imagined_obs[0], trace.real_obs[0])
    path = write_video(frames, tmp_path / "x.mp4", fps=10)
    assert iio.imread(path).shape[0] == 9


def test_video_refuses_envs_it_cannot_draw(tmp_path):
    model = LoopWM(LoopWMConfig.preset("tiny", obs_dim=3, action_dim=1))
    save(model, tmp_path / "m.safetensors", extra={"env_id": "Pendulum-v1"})
    with pytest.raises(ValueError, match="cannot render imagined states of Pendulum"):
        record_rollout(load(tmp_path / "m.safetensors"), "Pendulum-v1", steps=2)
