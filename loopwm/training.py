"""Training a world model: the open-loop loss, the trainer, held-out evaluation and
observation statistics. Shared by ``loopwm fit`` (:mod:`loopwm.fit`), the agent and Dyna.

A replay here is anything with ``sample_sequences``, ``eval_windows`` and ``obs`` /
``next_obs`` arrays: :class:`~loopwm.replay.Replay` or
:class:`~loopwm.online_replay.OnlineReplay`.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from loopwm.config import FitConfig
from loopwm.networks import adam, symlog
from loopwm.world_model import WorldModel


def batch_to_tensors(batch: dict, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Numpy windows from :class:`~loopwm.replay.Replay` as float tensors on ``device``."""
    return {k: torch.as_tensor(v, device=device).float() for k, v in batch.items()}


def world_model_loss(
    model: WorldModel, batch: dict[str, torch.Tensor], cfg: FitConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    """Open-loop loss over the batch's horizon.

    From ``h_0 = encode(o_0)`` the model imagines ``H`` steps under the stored actions
    (never re-encoding real observations), and each step ``k`` is scored on the next
    observation (standardised units), the symlog reward, the continuation flag, and the
    distance of ``h_k`` to the (stop-gradient) encoding of the real next observation,
    weighted ``horizon_discount**k`` and masked past the end of the episode. The
    observation ``o_0`` is also reconstructed from ``h_0``. An ensemble's members are each
    scored on their own prediction (next observation, reward, continuation, each from its
    own latent and heads) from the shared latent (their mean carries the rollout on), so
    every member learns the whole transition.

    Args:
        batch: ``obs0`` (B, O), ``action`` (B, H, A), ``next_obs`` (B, H, O),
            ``reward`` (B, H), ``terminated`` (B, H), ``mask`` (B, H).

    Returns:
        ``(loss, metrics)`` with slash-namespaced metric keys.
    """
    weights = cfg.loss_weights
    obs0, actions, next_obs = batch["obs0"], batch["action"], batch["next_obs"]
    batch_size, horizon = actions.shape[:2]
    target_obs = model.standardize(next_obs)  # (B, H, O)
    with torch.no_grad():
        target_latent = model.encode(next_obs.reshape(batch_size * horizon, -1))
        target_latent = target_latent.reshape(batch_size, horizon, -1)  # (B, H, D)
    target_cont = 1.0 - batch["terminated"]  # (B, H)
    cont_weight = 1.0 + (cfg.terminal_weight - 1.0) * batch["terminated"]  # (B, H)
    target_reward = symlog(batch["reward"])  # (B, H)
    discount = cfg.horizon_discount ** torch.arange(horizon, dtype=obs0.dtype, device=obs0.device)
    step_weight = batch["mask"] * discount  # (B, H)
    total_weight = step_weight.sum().clamp_min(1e-8)

    latent = model.encode(obs0)  # (B, D)
    # obs weight 0: decoder-free (latent consistency, reward, continuation), no decoder run
    decoded = weights["obs"] > 0
    if decoded:
        recon = F.mse_loss(model.decode(latent, standardized=True), model.standardize(obs0))
    else:
        recon = latent.new_zeros(())
    # The rollout is sequential; everything scored on it is computed once on the stacked
    # steps (the decoder and the errors), not step by step.
    preds, member_obs, rewards, conts, aux, iters = [], [], [], [], [], []
    previous = None
    with model.reuse_weights():
        for k in range(horizon):
            out = model.step(latent, actions[:, k], previous=previous)
            previous, latent = latent, out.latent  # (B, D): the members' mean for an ensemble
            if out.members is None:
                preds.append(latent)
                rewards.append(out.reward_symlog)
                conts.append(out.cont_logit)
            else:  # every member is scored on its own prediction (K, B, D)
                preds.append(out.members)
                member_obs.append(out.member_obs)  # decoded once, inside step
                rewards.append(out.member_reward_symlog)  # (K, B), each member's own head
                conts.append(out.member_cont_logit)
            iters.append(out.iters.float())
            if out.aux_loss is not None:
                aux.append(out.aux_loss)
    pred = torch.stack(preds, -2)  # (B, H, D), or (K, B, H, D) for an ensemble
    reward, cont = torch.stack(rewards, -1), torch.stack(conts, -1)  # (B, H) or (K, B, H)
    errors = {
        "reward": (reward - target_reward).pow(2),
        "cont": cont_weight
        * F.binary_cross_entropy_with_logits(cont, target_cont.expand_as(cont), reduction="none"),
        "consistency": (pred - target_latent).pow(2).mean(-1),
    }
    if decoded:  # an ensemble's members decoded inside step (K, B, H, O), else (B, H, O)
        obs = (
            torch.stack(member_obs, -2)
            if member_obs
            else model.decode(pred.flatten(0, 1), standardized=True).reshape(target_obs.shape)
        )
        errors["obs"] = (obs - target_obs).pow(2).mean(-1)
    if member_obs:  # averaged over the members
        errors = {k: v.mean(0) for k, v in errors.items()}
    terms = {k: (step_weight * v).sum() / total_weight for k, v in errors.items()}
    loss = weights["obs"] * recon + sum(weights[k] * terms[k] for k in terms)
    if aux:
        aux_loss = torch.stack(aux).mean()
        loss = loss + aux_loss
    all_iters = torch.stack(iters)
    metrics = {
        "wm/loss": float(loss.detach()),
        "wm/recon_loss": float(recon.detach()),
        **{f"wm/{k}_loss": float(v.detach()) for k, v in terms.items()},
        "loop/iters_mean": float(all_iters.mean()),
        "loop/iters_max": float(all_iters.max()),
    }
    if aux:
        metrics["loop/aux_loss"] = float(aux_loss.detach())
    return loss, metrics


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation of two 1-D arrays (ties share their average rank); NaN
    where either is constant."""
    rx, ry = _ranks(np.asarray(x, np.float64)), _ranks(np.asarray(y, np.float64))
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x))
    _, groups, counts = np.unique(x, return_inverse=True, return_counts=True)
    return (np.bincount(groups, weights=ranks) / counts)[groups]


EVAL_WINDOWS = 2048  # held-out windows scored per evaluation (fixed subset, fixed seed)


@torch.no_grad()
def evaluate(model: WorldModel, replay, horizon: int, *, limit: int = EVAL_WINDOWS) -> dict:
    """Held-out open-loop error of ``model`` on every ``horizon``-step window of ``replay``.

    The model encodes the first observation of each window once and imagines ``horizon``
    steps under the recorded actions. Errors are mean squared errors per observation
    dimension in the model's standardised units; ``copy`` is the predictor that repeats
    the window's first observation. Image models score fewer windows (at most
    ``EVAL_VALUES`` observation values per batch, 64 windows at least).

    Returns:
        ``obs_mse_1``, ``obs_mse_K``, ``copy_mse_1``, ``copy_mse_K``, ``reward_mse_1``,
        per-step curves ``obs_mse_by_step`` / ``copy_mse_by_step``, loop statistics, and
        ``iters_per_step`` (an array of every imagined step's iteration count), and how
        well each per-sample signal ranks the per-window error: ``{signal}_spearman_1``
        (first step) and ``{signal}_spearman_K`` (the signal summed over the window
        against its K-th step error) for ``residual``, ``iters`` and, with an ensemble,
        ``uncertainty`` (whose mean at the first step is ``uncertainty_mean_1``); a
        constant signal is left out. A decoder-free model (``model.decodes`` False) has
        no observation errors: ``latent_mse_1``, ``latent_mse_K`` and
        ``latent_mse_by_step`` (the distance to the encoded real observation, what its
        consistency loss trains) take their place, and rank the signals.
    """
    was_training = model.training
    model.eval()
    try:
        windows = batch_to_tensors(replay.eval_windows(horizon, limit), model.device)
        latent = model.encode(windows["obs0"])
        rollout = model.imagine(latent, windows["action"])
        reward_mse = (rollout.reward[:, 0] - windows["reward"][:, 0]).pow(2).mean()
        iters = rollout.iters.float()
        if model.decodes:
            pred = model.decode(rollout.latent.flatten(0, 1), standardized=True)
            target = model.standardize(windows["next_obs"])  # (B, K, O)
            pred = pred.reshape(target.shape)  # (B, K, O), standardised
            copy = model.standardize(windows["obs0"])[:, None, :]  # (B, 1, O)
            copy_curve = (copy - target).pow(2).mean(dim=(0, 2))  # (K,)
            errors = {
                "copy_mse_1": float(copy_curve[0]),
                "copy_mse_K": float(copy_curve[-1]),
                "copy_mse_by_step": [float(v) for v in copy_curve],
            }
            name = "obs_mse"
        else:  # decoder-free: the error its consistency loss trains, in latent space
            shape = windows["next_obs"].shape
            target = model.encode(windows["next_obs"].flatten(0, 1)).reshape(*shape[:2], -1)
            pred, errors, name = rollout.latent, {}, "latent_mse"
        error = (pred - target).pow(2).mean(-1)  # (B, K) per window and step
        curve = error.mean(0)  # (K,)
        errors.update({
            f"{name}_1": float(curve[0]),
            f"{name}_K": float(curve[-1]),
            f"{name}_by_step": [float(v) for v in curve],
        })  # fmt: skip
        error = error.cpu().numpy()
        signals = {"residual": rollout.residual, "iters": iters}
        if rollout.uncertainty is not None:
            signals["uncertainty"] = rollout.uncertainty
        ranking = {}
        for name, signal in signals.items():
            signal = signal.cpu().numpy()
            first = spearman(signal[:, 0], error[:, 0])
            summed = spearman(signal.sum(1), error[:, -1])
            # a constant signal (fixed iteration counts) ranks nothing: left out
            ranking.update({f"{name}_spearman_1": first} if first == first else {})
            ranking.update({f"{name}_spearman_K": summed} if summed == summed else {})
        if rollout.uncertainty is not None:
            ranking["uncertainty_mean_1"] = float(rollout.uncertainty[:, 0].mean())
        return {
            "windows": int(windows["obs0"].shape[0]),
            "horizon": horizon,
            **errors,
            "reward_mse_1": float(reward_mse),
            "iters_mean": float(iters.mean()),
            "iters_max": int(iters.max()),
            "latent_norm_max": float(rollout.latent.norm(dim=-1).max()),
            "iters_per_step": rollout.iters.flatten().cpu().numpy(),
            **ranking,
        }
    finally:
        model.train(was_training)


class LossModule(nn.Module):
    """The world-model loss as a module, so DDP sees a forward call and syncs gradients."""

    def __init__(self, model: nn.Module, loss_fn) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch):
        return self.loss_fn(self.model, batch)


POOLED_SAMPLE = 1024  # observations an image model's pixel statistics are estimated from


def obs_statistics(replay, *, pooled: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and std of the stored observations (constant dims get std 1).

    With ``pooled`` (images) every dimension gets the one mean and std of all pixel
    values, estimated from at most ``POOLED_SAMPLE`` stored observations (drawn with a
    fixed seed), so that the pixels stay comparable and the estimate costs no copy of
    the replay."""
    if pooled:
        rows = np.random.default_rng(0).integers(0, len(replay.obs), POOLED_SAMPLE)
        sample = replay.obs[np.unique(rows)].astype(np.float64)
        std = max(float(sample.std()), 1.0)  # a blank image set still gets a unit scale
        dim = replay.obs.shape[1]
        return np.full(dim, sample.mean()), np.full(dim, std)
    obs = np.concatenate([replay.obs, replay.next_obs])
    std = obs.std(axis=0)
    return obs.mean(axis=0), np.where(std < 1e-6, 1.0, std)


def set_obs_statistics(model: WorldModel, replay) -> None:
    """Fix ``model``'s observation standardisation from ``replay``'s observations (pooled
    over pixels for an image model, see :func:`obs_statistics`)."""
    model.set_obs_normalizer(*obs_statistics(replay, pooled=bool(model.config.image_shape)))


class WorldModelTrainer:
    """A world model with its optimizer, trained on sequences sampled from a replay.

    Args:
        model: the world model (its observation normaliser must already be set).
        config: batch size, horizon, learning rate, loss weights, seed of the batch sampler.
    """

    def __init__(self, model: WorldModel, config: FitConfig, *, ddp: bool = False) -> None:
        self.model = model
        self.config = config
        model.decodes = config.loss_weights["obs"] > 0  # decoder-free: decode() refuses
        self.optimizer = adam(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay, device=model.device
        )
        self.rng = np.random.default_rng(config.seed)
        self.steps = 0
        # The loss as a module: DistributedDataParallel syncs gradients of forward calls.
        loss = LossModule(model, partial(world_model_loss, cfg=config))
        if ddp:
            from torch.nn.parallel import DistributedDataParallel

            device = model.device
            ids = [device] if device.type == "cuda" else None
            loss = DistributedDataParallel(loss, device_ids=ids)
        self._loss = loss

    def train_step(self, replay) -> dict[str, float]:
        """One gradient step on a batch of open-loop windows; returns its metrics."""
        cfg = self.config
        self.model.train()
        window = replay.sample_sequences(cfg.batch_size, cfg.horizon, self.rng)
        batch = batch_to_tensors(window, self.model.device)
        loss, metrics = self._loss(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"world-model loss became {float(loss)} at step {self.steps}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.steps += 1
        metrics["wm/grad_norm"] = float(grad_norm)
        return metrics
