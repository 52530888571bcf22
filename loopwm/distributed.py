"""Data-parallel world-model training with PyTorch's own engine (torchrun + DDP).

``torchrun --nproc-per-node N -m loopwm fit ...`` starts N processes; each joins the
process group (gloo on CPU, NCCL on GPU), reads only its shard of the training episodes
from disk, draws ``batch_size / N`` windows per step, and DistributedDataParallel averages
the gradients. A step is then one step on the global batch, up to weighting: each rank
normalises its loss by its own windows' weights (which differ where windows run past an
episode's end) before the ranks are averaged. Only rank 0 evaluates, logs, and writes
checkpoints and videos; logged training metrics are rank 0's share of the batch.

``LOOPWM_DIST_TIMEOUT`` (seconds, default 600) bounds the rendezvous and every collective:
a peer that never arrives, or a rank that died, fails the run instead of hanging it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

from loopwm.errors import ConfigError, SetupError

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
DEFAULT_TIMEOUT_S = 600.0  # rendezvous and every collective (rank 0 evaluates alone)


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the process group."""

    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """True when torchrun (or another launcher) set the process-group variables."""
    return all(name in os.environ for name in ("RANK", "WORLD_SIZE"))


def init_distributed(device: str = "cpu", timeout_s: float | None = None) -> DistContext:
    """Join the process group torchrun describes; gloo on CPU, NCCL on CUDA.

    Raises:
        RuntimeError: not started by torchrun (no rendezvous variables), or the group
            could not form within ``timeout_s`` (a missing peer never hangs forever).
    """
    missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
    if missing:
        raise SetupError(
            f"distributed training needs the rendezvous variables torchrun sets (missing "
            f"{', '.join(missing)}); start it with: torchrun --nproc-per-node N -m loopwm fit ..."
        )
    if timeout_s is None:
        timeout_s = float(os.environ.get("LOOPWM_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    if device.startswith("cuda"):
        backend, torch_device = "nccl", torch.device("cuda", local_rank)
        torch.cuda.set_device(torch_device)
    else:
        backend, torch_device = "gloo", torch.device(device)
    if not dist.is_initialized():
        try:
            dist.init_process_group(
                backend, rank=rank, world_size=world, timeout=timedelta(seconds=timeout_s)
            )
        except (RuntimeError, ValueError, dist.DistError) as err:
            raise SetupError(
                f"rank {rank}: could not join the process group at "
                f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']} within "
                f"{timeout_s:.0f} s ({err})"
            ) from None
    return DistContext(rank, world, local_rank, backend, torch_device)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def shard(ids: np.ndarray, ctx: DistContext) -> np.ndarray:
    """This rank's share of the (already shuffled) training episode ids."""
    if len(ids) < ctx.world_size:
        raise ConfigError(
            f"{len(ids)} training episodes cannot be shared by {ctx.world_size} processes; "
            f"collect more episodes or start fewer processes"
        )
    return ids[ctx.rank :: ctx.world_size]


def global_obs_statistics(replay, config, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of observations over every rank's shard (constant dims get std 1); an
    image model's (``config.image_shape``) pooled pixel statistics are each rank's
    sample's (:func:`~loopwm.training.obs_statistics`), averaged over ranks."""
    if config.image_shape:
        from loopwm.training import obs_statistics

        mean, std = obs_statistics(replay, pooled=True)
        moments = torch.tensor([mean[0], std[0] ** 2 + mean[0] ** 2], dtype=torch.float64)
        moments = moments.to(device)
        dist.all_reduce(moments)
        moments = moments.cpu().numpy() / dist.get_world_size()
        pooled_std = max(float(np.sqrt(max(moments[1] - moments[0] ** 2, 0.0))), 1.0)
        return np.full_like(mean, moments[0]), np.full_like(std, pooled_std)
    obs = np.concatenate([replay.obs, replay.next_obs])
    x = torch.as_tensor(obs, dtype=torch.float64, device=device)
    sums = torch.stack([x.sum(0), x.pow(2).sum(0)])  # (2, O)
    count = torch.tensor([float(x.shape[0])], dtype=torch.float64, device=device)
    dist.all_reduce(sums)
    dist.all_reduce(count)
    mean = sums[0] / count
    std = (sums[1] / count - mean.pow(2)).clamp_min(0).sqrt()
    std = torch.where(std < 1e-6, torch.ones_like(std), std)
    return mean.float().cpu().numpy(), std.float().cpu().numpy()
