"""Command line: ``loopwm VERB ...``."""

from __future__ import annotations

import argparse
import inspect
import math
import sys
from pathlib import Path

from loopwm.checks import check_device, check_positive_int
from loopwm.cli_config import (
    add_config_arguments,
    add_model_arguments,
    config_from_args,
    model_overrides,
)
from loopwm.config import PRESET_NAMES, FitConfig
from loopwm.errors import ConfigError, LoopWMError
from loopwm.models import MODEL_CHOICES

DESCRIPTION = "loopwm: model-based RL with a looped, certified-contraction world model."


AGENT_UNUSED_FIT_FIELDS = ("steps", "eval_horizon", "holdout_fraction", "eval_every", "seed")


def _progress(args: argparse.Namespace) -> bool | None:
    return False if args.quiet else None  # None: a bar only when attached to a terminal


def cmd_collect(args: argparse.Namespace) -> int:
    from loopwm.collect import collect
    from loopwm.envs import make_env

    policy, name = None, "random"
    if args.policy:
        from loopwm.agents import load_sb3_policy

        env = make_env(args.env)
        try:
            policy = load_sb3_policy(
                args.policy,
                args.algo,
                env,
                deterministic=args.deterministic,
                device=args.device,
                trusted=args.trust_policy,
            )
        finally:
            env.close()
        name = f"sb3-{args.algo}:{args.policy}"
    meta = collect(
        args.env,
        args.steps,
        args.out,
        policy=policy,
        policy_name=name,
        seed=args.seed,
        chunk_size=args.chunk_size,
        progress=_progress(args),
        action_repeat=args.action_repeat,
    )
    print(
        f"stored {meta['transitions']} transitions in {meta['episodes']} episodes "
        f"({meta['chunks']} chunks) in {args.out}"
    )
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    from loopwm.distributed import launched_by_torchrun
    from loopwm.fit import fit

    cfg = config_from_args(FitConfig, args)
    overrides = model_overrides(args)
    out = args.out or f"runs/fit/{args.model}"
    model, result = fit(
        args.data,
        model=args.model,
        preset=args.preset,
        model_overrides=overrides,
        config=cfg,
        out=out,
        progress=_progress(args),
        device=args.device,
        logdir=None if args.no_tensorboard else f"{out}/tensorboard",
        distributed=args.distributed or launched_by_torchrun(),
        force=args.force,
    )
    if "heldout" not in result:
        return 0  # a rank > 0 of a distributed run: rank 0 reports and writes
    held = result["heldout"]
    k = held["horizon"]
    print(
        f"{args.model} ({result['parameters']:,} parameters) on {result['env_id']}, "
        f"{result['heldout_episodes']} held-out episodes, {held['windows']} windows"
    )
    decoded = "obs_mse_1" in held  # a decoder-free model has latent errors only
    print(f"held-out open-loop MSE ({'standardised obs' if decoded else 'latent, decoder-free'}):")
    print(f"  {'':18s}{'1-step':>10s}{f'{k}-step':>10s}")
    name = "obs_mse" if decoded else "latent_mse"
    print(f"  {args.model:18s}{held[f'{name}_1']:10.4f}{held[f'{name}_K']:10.4f}")
    if decoded:
        print(f"  {'copy last obs':18s}{held['copy_mse_1']:10.4f}{held['copy_mse_K']:10.4f}")
    print(f"loop iterations per step: mean {held['iters_mean']:.2f}, max {held['iters_max']}")
    if "contraction_bound" in result:
        print(f"contraction bound c = {result['contraction_bound']:.4f}")
    if "uncertainty_mean_1" in held:
        print(
            f"ensemble disagreement u: mean {held['uncertainty_mean_1']:.4f} at the first step; "
            f"Spearman with the 1-step error {held.get('uncertainty_spearman_1', math.nan):.2f}"
        )
    print(f"wrote {out}/model.safetensors and {out}/metrics.json")
    if not args.no_tensorboard:
        print(f"TensorBoard logs: tensorboard --logdir {out}/tensorboard")
    return 0


def cmd_dream(args: argparse.Namespace) -> int:
    from loopwm.agents import train_in_dream
    from loopwm.agents.honesty import honesty_lines

    out = args.out or f"runs/dream/{args.algo}"
    result = train_in_dream(
        args.checkpoint,
        args.algo,
        args.steps,
        env_id=args.env,
        start_states=args.start_states,
        eval_episodes=args.eval_episodes,
        seed=args.seed,
        uncertainty_penalty=args.uncertainty_penalty,
        uncertainty_limit=args.uncertainty_limit,
        uncertainty_halt=args.uncertainty_halt,
        ensemble_step=args.ensemble_step,
        episode_steps=args.episode_steps,
        termination=args.termination,
        out=out,
        progress=_progress(args),
        device=args.device,
    )
    dream, real = result["dream_return"], result["real_return"]
    print(f"{args.algo} trained for {args.steps} imagined steps in a model of {result['env_id']}")
    print(f"  return in the dream:    {dream[0]:10.2f} +- {dream[1]:.2f}")
    shaped = (
        args.uncertainty_penalty
        or args.uncertainty_limit is not None
        or args.uncertainty_halt is not None
        or args.ensemble_step != "mean"
        or args.episode_steps
    )
    if shaped:
        raw = result["dream_return_raw"]
        print(f"  ... in whole episodes, the plain dream: {raw[0]:7.2f} +- {raw[1]:.2f}")
    print(f"  return on the real env: {real[0]:10.2f} +- {real[1]:.2f}")
    print("the model along the agent's real episodes:")
    for line in honesty_lines(result["honesty"]):
        print(f"  {line}")
    print(f"wrote {out}/agent.zip and {out}/dream.json")
    return 0


def train_config(args: argparse.Namespace, base=None):
    """The TrainConfig ``loopwm train`` runs: ``base`` (default: the defaults) with the
    flags given, the ``--wm.*`` ones over the world-model fields it already sets."""
    from loopwm.agents import TrainConfig

    config = config_from_args(TrainConfig, args, base)
    return config.replace(agent=config.agent.with_model_overrides(model_overrides(args)))


def cmd_train(args: argparse.Namespace) -> int:
    from loopwm.agents import train
    from loopwm.agents.run import read_config

    if args.resume:
        if args.out:
            raise ConfigError("--resume continues the run in its own folder; drop --out")
        # The stored config with the given flags applied; the resume decides what may change.
        config = train_config(args, read_config(args.resume))
        run_dir = args.resume
    else:
        if "env_id" not in vars(args):
            raise ConfigError("--env is required for a new run (or --resume RUN_DIR)")
        config = train_config(args)
        run_dir = args.out or f"runs/train/{config.env_id.replace('/', '_')}"
    import signal

    def terminate(signum, frame):  # a scheduler's SIGTERM: stop as Ctrl-C does, data kept
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    try:
        summary = train(
            config,
            run_dir,
            resume=bool(args.resume),
            progress=_progress(args),
            tensorboard=not args.no_tensorboard,
            video=not args.no_video,
            device=args.device,
        )
    except KeyboardInterrupt:
        print(f"\ninterrupted; continue with: loopwm train --resume {run_dir}", file=sys.stderr)
        return 130
    print(
        f"{summary['env_id']}: {summary['env_steps']} real steps, {summary['updates']} updates, "
        f"{summary['wall_seconds']:.0f} s"
    )
    if summary["stopped"] == "reward_threshold":
        print(
            f"stopped early: the evaluation reached the reward threshold "
            f"{summary['reward_threshold']:g} (--stop-at-threshold false trains all "
            f"--steps)"
        )
    if summary["final_return_mean"] is not None:
        episodes = len(summary["evaluations"][-1]["returns"])
        print(
            f"final evaluation: return {summary['final_return_mean']:.1f} "
            f"+- {summary['final_return_std']:.1f} over {episodes} episodes"
        )
    print(f"wrote {run_dir}/agent.pt, {run_dir}/model.safetensors and {run_dir}/metrics.json")
    if summary.get("video"):
        print(f"video: {summary['video']}")
    if not args.no_tensorboard:
        print(f"TensorBoard logs: tensorboard --logdir {run_dir}/tensorboard")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import numpy as np

    from loopwm.agents import evaluate_agent, load_agent
    from loopwm.agents.honesty import Transitions, honesty_lines, model_honesty
    from loopwm.envs.spaces import ActionCodec

    agent, config, counters = load_agent(args.run, device=args.device)
    env = config.make_env()
    seen = Transitions()
    try:
        returns = evaluate_agent(agent, env, args.episodes, seed=args.seed, transitions=seen)
    finally:
        env.close()
    print(
        f"{config.env_id}, agent after {counters['env_steps']} real steps: return "
        f"{np.mean(returns):.1f} +- {np.std(returns):.1f} over {args.episodes} episodes"
    )
    honesty = model_honesty(agent.world_model, ActionCodec(env.action_space), seen)
    print("its world model along these episodes (what its imagination can be trusted with):")
    for line in honesty_lines(honesty):
        print(f"  {line}")
    return 0


def cmd_video(args: argparse.Namespace) -> int:
    from loopwm.checkpoint import load, recorded_action_repeat
    from loopwm.video import record_rollout, write_video

    for name in ("steps", "resync", "size", "fps"):
        check_positive_int(f"--{name}", getattr(args, name))
    if not (args.checkpoint or args.run):
        raise ConfigError("give --checkpoint (a world model) or --run (a `loopwm train` run)")
    if args.run and args.policy:
        raise ConfigError("--run acts with the run's agent; drop --policy or --run")
    policy, action_repeat, env_kwargs = None, 1, {}
    if args.run:
        from loopwm.agents import load_agent

        agent, config, _ = load_agent(args.run, device=args.device)
        model = (
            load(args.checkpoint, map_location=args.device)
            if args.checkpoint
            else agent.world_model
        )
        if args.env and args.env != config.env_id:
            raise ConfigError(f"{args.run} is a run of {config.env_id}, not {args.env}")
        env_id, action_repeat, env_kwargs = config.env_id, config.repeat, config.env_kwargs

        def policy(obs):
            return agent.act(obs, explore=False)
    else:
        model = load(args.checkpoint, map_location=args.device)
        env_id = args.env or (getattr(model, "checkpoint_extra", {}) or {}).get("env_id")
        action_repeat = recorded_action_repeat(model)  # the real env repeats as the data did
    if not env_id:
        raise ConfigError("--env is required: the checkpoint does not record its environment")
    if args.policy:
        from loopwm.agents import load_sb3_policy
        from loopwm.envs import make_env

        env = make_env(env_id)
        try:
            policy = load_sb3_policy(
                args.policy,
                args.algo,
                env,
                deterministic=True,
                device=args.device,
                trusted=args.trust_policy,
            )
        finally:
            env.close()
    frames, trace = record_rollout(
        model,
        env_id,
        steps=args.steps,
        resync_every=args.resync,
        policy=policy,
        size=args.size,
        seed=args.seed,
        action_repeat=action_repeat,
        env_kwargs=env_kwargs,
    )
    out = args.out
    if args.gif and not out.lower().endswith(".gif"):
        out = str(Path(out).with_suffix(".gif"))
    path = write_video(frames, out, fps=args.fps)
    print(
        f"wrote {path}: {len(frames)} frames of {frames[0].shape[1]}x{frames[0].shape[0]}, "
        f"loop iterations mean {trace.iters.mean():.2f} (max {trace.iters.max()}), "
        f"prediction error mean {trace.error.mean():.3f}"
    )
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from loopwm.bench import available, benchmarks_folder, run_benchmarks

    if not args.names:
        folder = benchmarks_folder()
        print(f"benchmarks in {folder}: {', '.join(available(folder))} (or 'all')")
        return 0
    results = run_benchmarks(
        args.names, quick=args.quick, extra=args.args, progress=_progress(args)
    )
    for name, code, seconds in results:
        print(f"{name}: {'ok' if code == 0 else f'FAILED (exit {code})'} in {seconds:.0f} s")
    return 0 if all(code == 0 for _, code, _ in results) else 1


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line, like loopwm's own (the usage is in --help)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _common(p: argparse.ArgumentParser, *, quiet: bool = True, device: bool = True) -> None:
    """The flags every verb spells the same way."""
    if device:
        p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    if quiet:
        p.add_argument("--quiet", action="store_true", help="no progress bar")


def _policy(p: argparse.ArgumentParser, help_text: str) -> None:
    p.add_argument("--policy", help=help_text)
    p.add_argument(
        "--trust-policy",
        action="store_true",
        help="load --policy although an SB3 zip holds pickled objects that run code when "
        "loaded: only for files you made or trust (refused without it)",
    )


def _algo(p: argparse.ArgumentParser, what: str) -> None:
    from loopwm.agents.sb3 import SB3_ALGOS

    p.add_argument("--algo", default="sac", choices=SB3_ALGOS, help=f"SB3 algorithm {what}")


def build_parser() -> argparse.ArgumentParser:
    from loopwm.agents.config import DreamerConfig, TrainConfig
    from loopwm.fit import fit

    parser = _Parser(
        prog="loopwm", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an expected error too"
    )
    sub = parser.add_subparsers(dest="verb", metavar="VERB")

    p = sub.add_parser("collect", help="store transitions of a gymnasium env on disk")
    p.add_argument(
        "--env",
        required=True,
        help="gymnasium id (flat or image observations, Box or Discrete actions)",
    )
    p.add_argument("--steps", type=int, required=True, help="transitions to store")
    p.add_argument("--out", required=True, help="dataset folder (must be new)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chunk-size", type=int, default=10_000, help="transitions per file")
    p.add_argument(
        "--action-repeat",
        type=int,
        default=None,
        help="env steps per stored transition (the action repeated, rewards summed); "
        "default: 2 on dm_control/... ids, as TD-MPC2 and DreamerV3 act, else 1",
    )
    _policy(p, "a saved stable-baselines3 model (.zip) to act with")
    _algo(p, "of --policy")
    p.add_argument("--deterministic", action="store_true", help="no policy sampling noise")
    _common(p)
    p.set_defaults(func=cmd_collect)

    fit_defaults = inspect.signature(fit).parameters
    p = sub.add_parser("fit", help="train a world model on a dataset, report held-out error")
    p.add_argument("--data", required=True, help="dataset folder from `loopwm collect`")
    p.add_argument("--model", default=fit_defaults["model"].default, choices=MODEL_CHOICES)
    p.add_argument(
        "--preset", default=fit_defaults["preset"].default, choices=PRESET_NAMES, help="model size"
    )
    p.add_argument("--out", help="output folder (default runs/fit/MODEL)")
    p.add_argument("--force", action="store_true", help="overwrite a model already in --out")
    p.add_argument("--no-tensorboard", action="store_true", help="no logs in OUT/tensorboard")
    p.add_argument(
        "--distributed",
        action="store_true",
        help="DistributedDataParallel across torchrun's processes (automatic under torchrun)",
    )
    _common(p)
    add_config_arguments(p, FitConfig)
    add_model_arguments(p)
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("train", help="train the Dreamer-style agent online (the main job)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a killed or finished run")
    p.add_argument("--out", help="run folder (default runs/train/ENV)")
    p.add_argument("--no-tensorboard", action="store_true", help="no logs in RUN/tensorboard")
    p.add_argument("--no-video", action="store_true", help="no RUN/videos/final.mp4")
    _common(p)
    add_config_arguments(
        p,
        TrainConfig,
        aliases={
            "env_id": ["--env"],
            "agent.model": ["--model"],
            "agent.preset": ["--preset"],
            "agent.planner.kind": ["--planner"],
            "async_envs": ["--async"],
        },
        # The agent's world-model fields are the --wm.* flags; its model_fit reuses FitConfig,
        # whose offline-only fields (steps, evaluation, split, seed) the agent never reads.
        skip=(
            "agent.model_overrides",
            *(f"agent.model_fit.{name}" for name in AGENT_UNUSED_FIT_FIELDS),
        ),
    )
    add_model_arguments(p, DreamerConfig().model_overrides)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="return of a trained agent on the real env")
    p.add_argument("--run", required=True, help="run folder of `loopwm train`")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=100_000, help="seed of the first episode")
    _common(p, quiet=False)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("dream", help="train an SB3 agent inside a world model, test it for real")
    p.add_argument("--checkpoint", required=True, help="world model from `loopwm fit`")
    _algo(p, "to train in the dream")
    p.add_argument("--steps", type=int, default=10_000, help="imagined env steps")
    p.add_argument("--env", help="real env id (default: the checkpoint's)")
    p.add_argument("--start-states", help="dataset folder to start imagined episodes from")
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--uncertainty-penalty",
        type=float,
        default=0.0,
        metavar="LAMBDA",
        help="reward r - LAMBDA*u, u the ensemble's disagreement (needs --wm.ensemble >= 2)",
    )
    p.add_argument(
        "--uncertainty-limit",
        type=float,
        metavar="U",
        help="truncate imagined episodes where u > U (needs --wm.ensemble >= 2)",
    )
    p.add_argument(
        "--uncertainty-halt",
        type=float,
        metavar="U",
        help="terminate imagined episodes where u > U, earning nothing after (MOReL's HALT; "
        "needs --wm.ensemble >= 2)",
    )
    p.add_argument(
        "--ensemble-step",
        choices=["mean", "random"],
        default="mean",
        help="an ensemble's next state: the members' mean, or one member drawn per step",
    )
    p.add_argument(
        "--episode-steps",
        type=int,
        metavar="N",
        help="truncate training episodes after N imagined steps (MBPO-style short rollouts, "
        "with --start-states; default: the real env's episode length)",
    )
    p.add_argument(
        "--termination",
        choices=["threshold", "sample"],
        default="threshold",
        help="end imagined episodes where the predicted continuation is below 0.5 "
        "(threshold) or with probability 1 - continuation at each step (sample)",
    )
    p.add_argument("--out", help="output folder (default runs/dream/ALGO)")
    _common(p)
    p.set_defaults(func=cmd_dream)

    p = sub.add_parser("bench", help="run benchmark scripts (writes benchmarks/results/)")
    p.add_argument("names", nargs="*", help="benchmark names or 'all' (none: list them)")
    p.add_argument("--quick", action="store_true", help="smoke runs that write nothing")
    p.add_argument(
        "--args", nargs=argparse.REMAINDER, default=[], help="arguments for the one benchmark"
    )
    _common(p, device=False)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("video", help="video of real vs imagined rollouts with loop iterations")
    p.add_argument("--checkpoint", help="world model from `loopwm fit` (or use --run)")
    p.add_argument("--run", help="a `loopwm train` run: its world model and its agent's policy")
    p.add_argument("--env", help="real env id (default: the checkpoint's)")
    _policy(p, "SB3 agent .zip to act with (default: random actions)")
    _algo(p, "of --policy")
    p.add_argument("--out", default="videos/rollout.mp4", help="output .mp4 (or .gif)")
    p.add_argument("--gif", action="store_true", help="write a GIF instead of mp4")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--resync", type=int, default=50, help="re-sync imagination every N steps")
    p.add_argument("--size", type=int, default=240, help="panel side in pixels (multiple of 16)")
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    _common(p, quiet=False)
    p.set_defaults(func=cmd_video)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verb is None:
        parser.print_help()
        return 2
    try:
        if "device" in vars(args):
            check_device(args.device)
        return args.func(args)
    except LoopWMError as err:  # an expected failure: one line; a bug keeps its traceback
        if args.debug:
            raise
        print(f"loopwm {args.verb}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # the file system refused: a permission, a full disk, a path
        if args.debug:
            raise
        where = f": {err.filename}" if err.filename else ""
        print(f"loopwm {args.verb}: error: {err.strerror or err}{where}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
