"""loopwm: model-based RL with a looped, certified-contraction world model.

>>> from loopwm import LoopWM, LoopWMConfig
>>> model = LoopWM(LoopWMConfig(obs_dim=4, action_dim=1))
>>> model.contraction_bound() < model.config.c_max
True
"""

import os

# Headless MuJoCo rendering by default; must be set before mujoco/gymnasium are imported.
os.environ.setdefault("MUJOCO_GL", "egl")

from loopwm.baselines import GRUWorldModel, MLPWorldModel  # noqa: E402
from loopwm.checkpoint import CheckpointError, load, save  # noqa: E402
from loopwm.config import FitConfig, LoopWMConfig  # noqa: E402
from loopwm.looped import GatedLoopWM, LoopWM  # noqa: E402
from loopwm.models import MODEL_NAMES, build_model  # noqa: E402
from loopwm.world_model import Rollout, StepOutput, WorldModel  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "MODEL_NAMES",
    "CheckpointError",
    "FitConfig",
    "GRUWorldModel",
    "GatedLoopWM",
    "LoopWM",
    "LoopWMConfig",
    "MLPWorldModel",
    "Rollout",
    "StepOutput",
    "WorldModel",
    "build_model",
    "load",
    "save",
]
