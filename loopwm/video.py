"""Videos of real vs imagined rollouts, with the loop's iteration counts.

Each frame has three panels of the same size: the real MuJoCo render, the render of the
model's *imagined* state (open loop from a real start state, re-synchronised with the real
observation every ``resync_every`` steps, marked on screen), and a strip chart of the loop
iterations and the prediction error per step with the current step highlighted. For a
model of pixels the first two panels are the real frames and the model's decoded frames
(the newest of a stack), enlarged.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from loopwm.checks import check_positive_int
from loopwm.errors import CheckpointError, SetupError
from loopwm.world_model import WorldModel

Policy = Callable[[np.ndarray], np.ndarray]

GL_HELP = (
    "MuJoCo could not render. loopwm sets MUJOCO_GL=egl by default (headless); try "
    "MUJOCO_GL=osmesa (apt-get install libosmesa6) or MUJOCO_GL=glfw with a display."
)


@dataclass
class RolloutTrace:
    """Per-step record of a real vs imagined rollout of ``T`` steps."""

    real_obs: np.ndarray  # (T + 1, obs_dim) flat (images: pixel values)
    imagined_obs: np.ndarray  # (T + 1, obs_dim), equal to real_obs at re-sync steps
    iters: np.ndarray  # (T,) loop iterations of each imagined step
    error: np.ndarray  # (T,) ||imagined - real|| in standardised units after each step
    resync: np.ndarray  # (T + 1,) bool: the imagined state was reset to the real one here


def _round16(n: int) -> int:
    return max(16, int(round(n / 16)) * 16)


@torch.no_grad()
def record_rollout(
    model: WorldModel,
    env_id: str,
    *,
    steps: int = 200,
    resync_every: int = 50,
    policy: Policy | None = None,
    size: int = 240,
    seed: int = 0,
    action_repeat: int = 1,
    env_kwargs: dict | None = None,
) -> tuple[list[np.ndarray], RolloutTrace]:
    """Run the real env and the model side by side; return composed frames and the trace.

    Args:
        model: a world model of ``env_id``.
        env_id: the real environment (its observations must map back to MuJoCo states,
            or be the images the model was fitted on).
        steps: environment steps to record (the episode restarts if it ends).
        resync_every: re-encode the real observation every this many steps.
        policy: ``obs -> action`` (uniform random actions if ``None``).
        size: side of each square panel in pixels (rounded to a multiple of 16).
        seed: seeds the real env and the random policy.
        action_repeat: env steps per model step (the real env applies each action this
            many times, as the model's data did).
        env_kwargs: keyword arguments of the env's constructor, as the model's data had.
    """
    from loopwm.envs.render import StateRenderer, check_renderable
    from loopwm.envs.spaces import ActionCodec, ObsCodec, make_env  # make_env checks spaces

    for name, value in (("steps", steps), ("resync_every", resync_every), ("size", size)):
        check_positive_int(name, value)
    model.require_decoder("a video of imagined states")
    image = bool(model.config.image_shape)
    if not image:
        check_renderable(env_id)
    size = _round16(size)
    model = model.eval()
    drawn = {} if image else {"render_mode": "rgb_array", "width": size, "height": size}
    kwargs = {**(env_kwargs or {}), **drawn}  # the video's own render settings win
    real_env = make_env(env_id, action_repeat=action_repeat, **kwargs)
    imagined_env = None if image else make_env(env_id, **kwargs)
    try:
        observations = ObsCodec(real_env.observation_space)
        actions = ActionCodec(real_env.action_space)
        found = (observations.dim, observations.image_shape, actions.dim)
        cfg = model.config
        if found != (cfg.obs_dim, cfg.image_shape, cfg.action_dim):
            raise CheckpointError(
                f"the model was fitted on {cfg.obs_dim}-value observations "
                f"{cfg.image_shape or ''} with {cfg.action_dim}-dim actions, but {env_id} "
                f"has {real_env.observation_space} and {actions.dim}-dim actions: is it a "
                f"model of another env?"
            )
        if image:
            real_view = ImageView(observations, size)
            imagined = ImageView(observations, size)
        else:
            real_view = RealView(StateRenderer(real_env))  # shadow-free
            imagined = StateRenderer(imagined_env, action_repeat=action_repeat)
        real_env.action_space.seed(seed)
        obs, _ = real_env.reset(seed=seed)

        def flat(o: np.ndarray) -> np.ndarray:
            return observations.to_vectors(o)[0][0].astype(np.float64)  # (obs_dim,)

        def encode(o: np.ndarray) -> torch.Tensor:
            return model.encode(model.check_input(observations.to_vectors(o)[0], "obs"))

        std = model.obs_std.cpu().numpy()
        latent, previous = encode(obs), None
        imagined.reset(flat(obs))
        real_view.reset(flat(obs))
        real_obs, imagined_obs, resync = [flat(obs)], [flat(obs)], [True]
        iters, errors, real_frames, imagined_frames = [], [], [], []
        try:
            real_frames.append(real_view.render())
            imagined_frames.append(imagined.render())
        except Exception as err:  # GL failures surface as many exception types
            raise SetupError(f"{GL_HELP} ({type(err).__name__}: {err})") from err
        for t in range(1, steps + 1):
            action = real_env.action_space.sample() if policy is None else policy(obs)
            vector = actions.check(action, 1)  # (1, action_dim): clipped or one-hot
            next_obs, _, terminated, truncated, _ = real_env.step(actions.to_env(vector[0]))
            out = model.step(latent, model.check_input(vector, "action"), previous=previous)
            predicted = model.decode(out.latent)[0].cpu().numpy().astype(np.float64)
            errors.append(float(np.linalg.norm((predicted - flat(next_obs)) / std)))
            iters.append(int(out.iters[0]))
            imagined.advance(predicted)
            real_view.advance(flat(next_obs))
            real_frames.append(real_view.render())
            ended = terminated or truncated
            if ended:
                next_obs, _ = real_env.reset()
                real_view.reset(flat(next_obs))
            if ended or t % resync_every == 0:
                latent, previous = encode(next_obs), None
                imagined.reset(flat(next_obs))
                predicted, synced = flat(next_obs), True
            else:
                latent, previous, synced = out.latent, latent, False
            imagined_frames.append(imagined.render())
            real_obs.append(flat(next_obs))
            imagined_obs.append(predicted)
            resync.append(synced)
            obs = next_obs
    finally:
        real_env.close()
        if imagined_env is not None:
            imagined_env.close()
    trace = RolloutTrace(
        real_obs=np.asarray(real_obs),
        imagined_obs=np.asarray(imagined_obs),
        iters=np.asarray(iters),
        error=np.asarray(errors),
        resync=np.asarray(resync),
    )
    chart = _Chart(trace, size)
    frames = [
        np.concatenate(
            [
                _label(real_frames[t], "real"),
                _label(imagined_frames[t], "imagined", "RE-SYNC" if trace.resync[t] else None),
                chart.frame(t),
            ],
            axis=1,
        )
        for t in range(len(real_frames))
    ]
    return frames, trace


class RealView:
    """The real env's own render: its state is never set from an observation."""

    def __init__(self, renderer) -> None:
        self.renderer = renderer

    def reset(self, obs: np.ndarray) -> None:
        pass

    def advance(self, obs: np.ndarray) -> None:
        pass

    def render(self) -> np.ndarray:
        return self.renderer.render()


class ImageView:
    """Draws flat image observations (real or decoded) as their newest RGB frame,
    enlarged (nearest pixel) to ``size`` x ``size``: the pixel counterpart of
    :class:`~loopwm.envs.render.StateRenderer`."""

    def __init__(self, observations, size: int) -> None:
        self.observations, self.size = observations, size
        self._obs: np.ndarray | None = None

    def reset(self, obs: np.ndarray) -> None:
        self._obs = obs

    def advance(self, obs: np.ndarray) -> None:
        self._obs = obs

    def render(self) -> np.ndarray:
        from loopwm.envs.pixels import resample

        return resample(
            self.observations.frame(self.observations.to_env(self._obs[None])[0]), self.size
        )


def _label(frame: np.ndarray, text: str, flag: str | None = None) -> np.ndarray:
    from PIL import Image, ImageDraw

    image = Image.fromarray(np.ascontiguousarray(frame))
    draw = ImageDraw.Draw(image)
    draw.text((6, 4), text, fill=(255, 255, 255))
    if flag:
        w, h = image.size
        draw.rectangle([0, 0, w - 1, h - 1], outline=(255, 200, 0), width=3)
        draw.text((6, 16), flag, fill=(255, 200, 0))
    return np.asarray(image)


class _Chart:
    """The strip chart, drawn once with matplotlib; each frame only moves a cursor."""

    def __init__(self, trace: RolloutTrace, size: int) -> None:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        steps = np.arange(1, len(trace.iters) + 1)
        fig, (ax_it, ax_err) = plt.subplots(
            2, 1, figsize=(size / 80, size / 80), dpi=80, sharex=True
        )
        ax_it.bar(steps, trace.iters, width=1.0, color="tab:orange")
        ax_it.set_ylabel("loop iters", fontsize=7)
        ax_err.plot(steps, trace.error, color="tab:blue", lw=1)
        ax_err.set_ylabel("pred. error", fontsize=7)
        ax_err.set_xlabel("step", fontsize=7)
        for ax in (ax_it, ax_err):
            ax.tick_params(labelsize=6)
            for s in np.flatnonzero(trace.resync[1:]) + 1:
                ax.axvline(s, color="0.7", lw=0.5)
        ax_it.set_xlim(0.5, len(steps) + 0.5)
        fig.tight_layout(pad=0.3)
        fig.canvas.draw()
        self.image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
        # pixel column of each step (display coordinates have their origin at the bottom)
        xs = ax_it.transData.transform(np.stack([steps, np.zeros_like(steps)], 1))[:, 0]
        self.columns = np.clip(np.round(xs).astype(int), 0, self.image.shape[1] - 1)
        plt.close(fig)
        if self.image.shape[:2] != (size, size):
            raise RuntimeError(f"chart rendered at {self.image.shape[:2]}, expected {size}")

    def frame(self, t: int) -> np.ndarray:
        image = self.image.copy()
        if t >= 1:
            col = self.columns[t - 1]
            image[:, max(col - 1, 0) : col + 1] = (220, 30, 30)
        return image


def write_video(frames: list[np.ndarray], path: str | os.PathLike, fps: int = 30) -> Path:
    """Write frames as mp4 (libx264) or, for a ``.gif`` path, a looping GIF."""
    import imageio.v3 as iio

    check_positive_int("fps", fps)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.stack(frames)
    if path.suffix.lower() == ".gif":
        iio.imwrite(path, array, duration=1000 / fps, loop=0)
    else:
        iio.imwrite(path, array, fps=fps, codec="libx264")
    return path


def log_open_loop_video(
    logger,
    model,
    env_id: str | None,
    step: int,
    policy=None,
    action_repeat: int = 1,
    env_kwargs: dict | None = None,
) -> None:
    """Log ``eval/open_loop_video`` (real | imagined | iterations, 40 steps) where the env
    can draw imagined states; other envs get no video (their scalars still go out).
    ``action_repeat`` and ``env_kwargs``: the env as in the model's data."""
    from loopwm.envs.render import check_renderable

    if env_id is None or not model.decodes:
        return  # no env to render, or a decoder-free model: nothing imagined to draw
    try:
        if not model.config.image_shape:  # an image model draws its own decoded frames
            check_renderable(env_id)
    except ValueError:
        return
    frames, _ = record_rollout(
        model,
        env_id,
        steps=40,
        resync_every=20,
        size=96,
        seed=step,
        policy=policy,
        action_repeat=action_repeat,
        env_kwargs=env_kwargs,
    )
    logger.video("eval/open_loop_video", np.stack(frames), step)
