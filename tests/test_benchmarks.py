"""The benchmark scripts measure what the docs say they measure."""

import shlex
import sys
from pathlib import Path

import pytest

from loopwm.agents import TrainConfig
from loopwm.cli import build_parser
from loopwm.cli import train_config as cli_train_config

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def agent_benchmark():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import agent

        yield agent
    finally:
        sys.path.remove(str(BENCHMARKS))


def train_config(command: str) -> TrainConfig:
    """The TrainConfig that ``loopwm train COMMAND`` runs."""
    return cli_train_config(build_parser().parse_args(["train", *shlex.split(command)]))


def test_agent_benchmark_runs_loopwm_train_defaults(agent_benchmark):
    """`dreamer` in benchmarks/agent.py is `loopwm train` with the benchmark's budget and
    schedule: the agent's default world-model settings (obs_symlog) included."""
    schedule = "--eval-every 1000 --eval-episodes 5 --checkpoint-every 1000 --seed 3"
    schedule += " --stop-at-threshold false"  # whole learning curves unless asked
    expected = train_config(f"--env CartPole-v1 --steps 10000 --action-repeat 1 {schedule}")
    assert expected.agent.model_overrides == {"obs_symlog": True}
    assert agent_benchmark.dreamer_config("CartPole-v1", 10_000, 1000, 3) == expected
    # model overrides are laid over the agent's defaults, as --wm.* flags are
    wm = train_config(
        f"--env CartPole-v1 --steps 10000 --action-repeat 1 {schedule} --wm.c-max 0.8"
    )
    got = agent_benchmark.dreamer_config(
        "CartPole-v1", 10_000, 1000, 3, model_overrides={"c_max": 0.8}
    )
    assert got == wm
    assert got.agent.model_overrides == {"obs_symlog": True, "c_max": 0.8}
