"""A model family is one new file plus one registry line: the docs' example, end to end."""

import re
import sys
from pathlib import Path

import pytest
import torch

from loopwm import load
from loopwm.config import FitConfig
from loopwm.fit import fit
from loopwm.models import MODEL_CHOICES, build_model, model_config
from loopwm.registry import MODEL_REGISTRY

DOCS = Path(__file__).resolve().parents[1] / "docs" / "api.md"


@pytest.fixture
def residual_family(tmp_path, monkeypatch):
    """The family file of docs/api.md, imported as a module (what its registry line does)."""
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.S)
    source = next(b for b in blocks if '@register_model("residual")' in b)
    (tmp_path / "residual_family.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    import residual_family

    yield residual_family
    MODEL_REGISTRY.pop("residual", None)
    sys.modules.pop("residual_family", None)


def test_a_new_family_works_everywhere_once_registered(residual_family, pendulum_data, tmp_path):
    from loopwm.agents import DreamerConfig
    from loopwm.cli import build_parser

    assert "residual" in MODEL_CHOICES
    config = model_config("residual", "tiny", obs_dim=4, action_dim=1)
    assert type(config).__name__ == "ResidualConfig" and config.step_size == 0.5
    model = build_model("residual", config)
    out = model.step(model.encode(torch.zeros(3, 4)), torch.zeros(3, 1))
    assert out.latent.shape == (3, config.latent_dim) and (out.iters == 1).all()

    cfg = FitConfig(steps=5, batch_size=8, horizon=3, eval_horizon=3, eval_every=0)
    fit(pendulum_data, model="residual", preset="tiny", config=cfg, out=tmp_path, progress=False)
    loaded = load(tmp_path / "model.safetensors")
    assert type(loaded).__name__ == "ResidualWorldModel" and loaded.config == config

    assert DreamerConfig(model="residual").model == "residual"
    help_text = build_parser()._subparsers._group_actions[0].choices["fit"].format_help()
    assert "--wm.step-size" in help_text and "[residual]" in help_text


def test_a_name_is_registered_once():
    from loopwm.looped import LoopWM
    from loopwm.registry import register_model

    with pytest.raises(ValueError, match="already registered"):
        register_model("gru")(LoopWM)
    with pytest.raises(ValueError, match="not LoopWMConfig fields"):
        register_model("broken", requires={"no_such_field": 1})(LoopWM)
