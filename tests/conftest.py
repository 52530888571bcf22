import os

os.environ.setdefault("MUJOCO_GL", "egl")

import pytest  # noqa: E402
import torch  # noqa: E402

from loopwm import LoopWM, LoopWMConfig  # noqa: E402
from loopwm.collect import collect  # noqa: E402
from loopwm.replay import Replay  # noqa: E402


@pytest.fixture
def tiny_config() -> LoopWMConfig:
    return LoopWMConfig.preset("tiny", obs_dim=5, action_dim=2)


@pytest.fixture
def tiny_model(tiny_config) -> LoopWM:
    torch.manual_seed(0)
    return LoopWM(tiny_config)


def random_batch(config: LoopWMConfig, batch: int = 8, horizon: int = 3, seed: int = 0) -> dict:
    """A synthetic training batch shaped like Replay.sample_sequences output, as tensors."""
    g = torch.Generator().manual_seed(seed)
    return {
        "obs0": torch.randn(batch, config.obs_dim, generator=g),
        "action": torch.rand(batch, horizon, config.action_dim, generator=g) * 2 - 1,
        "next_obs": torch.randn(batch, horizon, config.obs_dim, generator=g),
        "reward": torch.randn(batch, horizon, generator=g),
        "terminated": (torch.rand(batch, horizon, generator=g) < 0.1).float(),
        "mask": torch.ones(batch, horizon),
    }


@pytest.fixture(scope="session")
def pendulum_dir(tmp_path_factory):
    """4,000 random-policy InvertedPendulum-v5 transitions, collected once per session."""
    root = tmp_path_factory.mktemp("pendulum")
    collect("InvertedPendulum-v5", 4000, root, seed=0, chunk_size=1500, progress=False)
    return root


@pytest.fixture(scope="session")
def pendulum_data(pendulum_dir) -> Replay:
    return Replay.load(pendulum_dir)


@pytest.fixture(scope="session")
def pendulum_checkpoint(pendulum_data, tmp_path_factory):
    """A tiny LoopWM fitted briefly on the pendulum data, saved with its env id."""
    from loopwm.config import FitConfig
    from loopwm.fit import fit

    out = tmp_path_factory.mktemp("pendulum_fit")
    cfg = FitConfig(steps=150, batch_size=32, horizon=4, eval_horizon=3, eval_every=0)
    fit(pendulum_data, preset="tiny", config=cfg, out=out, progress=False)
    return out / "model.safetensors"
