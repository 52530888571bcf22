"""loopwm: model-based RL with a looped, certified-contraction world model.

>>> from loopwm import LoopWM, LoopWMConfig
>>> model = LoopWM(LoopWMConfig(obs_dim=4, action_dim=1))
>>> model.contraction_bound() < model.config.c_max
True
"""

import os

# Headless MuJoCo rendering by default; must be set before mujoco/gymnasium are imported.
os.environ.setdefault("MUJOCO_GL", "egl")

from loopwm.baselines import GRUWorldModel, MLPConfig, MLPWorldModel  # noqa: E402
from loopwm.checkpoint import load, save  # noqa: E402
from loopwm.config import FitConfig, LoopWMConfig  # noqa: E402
from loopwm.errors import CheckpointError, ConfigError, LoopWMError  # noqa: E402
from loopwm.looped import GatedLoopWM, GatedLoopWMConfig, LoopWM  # noqa: E402
from loopwm.models import MODEL_NAMES, build_model, model_config  # noqa: E402
from loopwm.registry import register_model  # noqa: E402
from loopwm.world_model import Rollout, StepOutput, WorldModel  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "MODEL_NAMES",
    "CheckpointError",
    "ConfigError",
    "FitConfig",
    "GRUWorldModel",
    "GatedLoopWM",
    "GatedLoopWMConfig",
    "LoopWM",
    "LoopWMConfig",
    "LoopWMError",
    "MLPConfig",
    "MLPWorldModel",
    "Rollout",
    "StepOutput",
    "WorldModel",
    "build_model",
    "load",
    "model_config",
    "register_model",
    "save",
]
