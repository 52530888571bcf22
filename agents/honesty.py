"""How far a world model can be trusted along a policy's *real* transitions.

The same check serves a dream (``train_in_dream``, ``loopwm dream``) and an agent's own
model (``loopwm eval --run``): record the transitions of real evaluation episodes in a
:class:`Transitions`, then :func:`model_honesty` steps the model from each real state
and compares what it predicts with what the real env did.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from loopwm.envs.spaces import ActionCodec
    from loopwm.world_model import WorldModel

HONESTY_CHUNK = 1024  # real transitions the check steps the model on at once


class Transitions:
    """Each step's observation, action, next observation (the episode's last one, not
    an autoreset's first), whether the env terminated it, and a dream's ``uncertainty``.

    :meth:`add` records one step; the instance itself is an SB3 ``evaluate_policy``
    callback."""

    def __init__(self) -> None:
        self.obs, self.actions, self.next_obs, self.terminated, self.uncertainty = (
            [] for _ in range(5)
        )

    def __len__(self) -> int:
        return len(self.obs)

    def add(
        self, obs: Any, action: Any, next_obs: Any, terminated: bool, info: dict | None = None
    ) -> None:
        self.obs.append(np.asarray(obs))
        self.actions.append(np.asarray(action))
        self.next_obs.append(np.asarray(next_obs))
        self.terminated.append(bool(terminated))
        if info and "uncertainty" in info:
            self.uncertainty.append(float(info["uncertainty"]))

    def __call__(self, local: dict, _globals: dict) -> None:
        i, info = local["i"], local["info"]
        done = bool(local["done"])
        # a vec env resets at once: the episode's last observation is in the info
        nxt = info["terminal_observation"] if done else local["new_observations"][i]
        terminated = done and not info.get("TimeLimit.truncated", False)
        self.add(local["observations"][i], local["actions"][i], nxt, terminated, info)


def model_honesty(
    model: WorldModel,
    actions: ActionCodec,
    real: Transitions,
    dream: Transitions | None = None,
) -> dict:
    """The model checked along ``real`` transitions (``actions``: the env's
    :class:`~loopwm.envs.spaces.ActionCodec`). Returns ``model_error``: the model's mean
    1-step error there (squared, per observation dimension, in its standardised units:
    1.0 is the training data's variance; ``None`` for a decoder-free model);
    ``cont_at_terminations``: its mean predicted continuation at the real env's
    terminations (0 is right; ``None`` if none) and ``terminations``; ``reach``, for flat
    observations, the largest ``|observation - mean|`` per dimension the episodes reached,
    in standard deviations of the statistics the model standardises with (a fitted
    model's: its dataset's, far above 3 lies outside it; an agent's: its random
    prefill's). With an ensemble also ``uncertainty`` (the mean disagreement ``u``
    there), ``uncertainty_error_spearman`` (does ``u`` rank those errors?) and, given a
    dream's own transitions, ``dream_uncertainty`` (its mean ``u`` in the dream: a real
    ``u`` far above it means the policy reaches states the dream never showed it).
    """
    import torch

    from loopwm.training import spearman

    if not len(real):
        raise ValueError("model_honesty needs at least one real transition")
    parameter = next(model.parameters())

    def tensor(x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(x, device=parameter.device, dtype=parameter.dtype)

    n = len(real)
    errors, conts, us, reach = [], [], [], None
    training = model.training
    model.eval()  # deterministic halting, as when imagining
    try:
        with torch.no_grad():
            # in chunks: a pixel policy's long episodes would not fit in memory at once
            for start in range(0, n, HONESTY_CHUNK):
                rows = slice(start, start + HONESTY_CHUNK)
                m = len(real.obs[rows])
                obs = tensor(np.stack(real.obs[rows]).reshape(m, -1))
                nxt = tensor(np.stack(real.next_obs[rows]).reshape(m, -1))
                action = tensor(actions.check(np.stack(real.actions[rows]), m))
                out = model.step(model.encode(obs), action)
                standardized = model.standardize(nxt)
                if model.decodes:
                    predicted = model.decode(out.latent, standardized=True)
                    errors.append((predicted - standardized).pow(2).mean(-1).cpu().numpy())
                conts.append(out.cont.cpu().numpy())
                if out.uncertainty is not None:
                    us.append(out.uncertainty.cpu().numpy())
                if not model.config.image_shape:
                    deviations = (nxt - model.obs_mean) / model.obs_std  # before any symlog
                    chunk_reach = deviations.abs().amax(0).cpu().numpy()
                    reach = chunk_reach if reach is None else np.maximum(reach, chunk_reach)
    finally:
        model.train(training)
    error = np.concatenate(errors) if errors else None
    cont = np.concatenate(conts)
    terminated = np.asarray(real.terminated, dtype=bool)
    record = {
        "transitions": n,
        "obs_symlog": bool(model.config.obs_symlog and not model.config.image_shape),
        "model_error": None if error is None else float(error.mean()),
        "terminations": int(terminated.sum()),
        "cont_at_terminations": float(cont[terminated].mean()) if terminated.any() else None,
    }
    if reach is not None:
        record["reach"] = [round(float(x), 3) for x in reach]
    if us:
        u = np.concatenate(us)
        record["uncertainty"] = float(u.mean())
        ranks = error is not None and n > 1
        record["uncertainty_error_spearman"] = spearman(u, error) if ranks else None
        if dream is not None and dream.uncertainty:
            record["dream_uncertainty"] = float(np.mean(dream.uncertainty))
    return record


def honesty_lines(record: dict) -> list[str]:
    """A :func:`model_honesty` record as lines for a terminal."""
    lines = [f"{record['transitions']} real transitions"]
    if record["model_error"] is not None:
        units = "symlog of standardised" if record.get("obs_symlog") else "standardised"
        lines.append(
            f"1-step error {record['model_error']:.4f} (squared, {units} units: the data's "
            "variance is about 1)"
        )
    if record["terminations"]:
        lines.append(
            f"predicted continuation at the {record['terminations']} real terminations: "
            f"{record['cont_at_terminations']:.2f} (right: 0)"
        )
    if record.get("reach"):
        lines.append(
            f"farthest observation: {max(record['reach']):.1f} standard deviations from the "
            "mean the model standardises with"
        )
    if "uncertainty" in record:
        spearman = record["uncertainty_error_spearman"]
        dream = record.get("dream_uncertainty")
        lines.append(
            f"disagreement u there {record['uncertainty']:.4f}"
            + ("" if dream is None else f", in the dream {dream:.4f}")
            + ("" if spearman is None else f"; Spearman(u, error) {spearman:.2f}")
        )
    return lines
