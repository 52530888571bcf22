"""House rules that keep the code base one home per thing."""

import ast
import dataclasses
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("loopwm", "envs", "agents", "benchmarks")
# Private names of other libraries with no public equivalent, each used once on purpose.
THIRD_PARTY_PRIVATE = {
    "_version",  # torch: a tensor's in-place counter, the weight cache's key
    "_get_viewer",  # gymnasium's MuJoCo renderer: the only handle on its scene flags
    "_get_file_writer",  # torch's SummaryWriter: raw image summaries without moviepy
    "_last_obs",  # stable-baselines3: the observation a callback's step acted from
    "_last_original_obs",
    "_vec_normalize_env",
    "_python_dispatch",  # torch: TorchDispatchMode for the FLOP-fraction replay
}


def modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def own_private_names(tree: ast.AST) -> set[str]:
    """Private names a module defines: its functions, classes, and attributes it assigns."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name.startswith("_"):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return {n for n in names if n.startswith("_")}


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_reaches_into_another_modules_private_names(path):
    tree = ast.parse(path.read_text())
    own = own_private_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and "loopwm" in node.module:
            found += [a.name for a in node.names if a.name.startswith("_")]
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            name = node.attr
            if name.startswith("__") or name in own or name in THIRD_PARTY_PRIVATE:
                continue
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                continue
            found.append(f"{ast.unparse(node)} (line {node.lineno})")
    assert not found, f"{path.name} uses private names of other modules: {found}"


def test_help_shows_the_config_dataclasses_own_defaults():
    """Every generated flag's help ends with the dataclass default: they cannot drift."""
    from loopwm.agents.config import TrainConfig
    from loopwm.cli import build_parser
    from loopwm.config import FitConfig

    parser = build_parser()
    verbs = parser._subparsers._group_actions[0].choices  # argparse has no public accessor
    checked = 0
    for verb, root in (("train", TrainConfig), ("fit", FitConfig)):
        actions = {a.dest: a for a in verbs[verb]._actions}
        stack = [("", root())]
        while stack:
            prefix, config = stack.pop()
            for field in dataclasses.fields(config):
                path, value = prefix + field.name, getattr(config, field.name)
                if dataclasses.is_dataclass(value):
                    stack.append((path + ".", value))
                elif path in actions:
                    assert actions[path].help.endswith(f"(default: {value!r})"), path
                    checked += 1
    assert checked >= 40
    help_text = verbs["train"].format_help()
    assert re.search(r"--agent\.horizon INT\s+Imagination horizon", help_text)
    assert "--planner" in help_text and "--wm.c-max" in help_text


def test_every_model_field_has_a_flag_with_each_presets_value():
    from loopwm.cli import build_parser
    from loopwm.cli_config import ENV_FIELDS
    from loopwm.config import MODEL_PRESETS
    from loopwm.models import MODEL_NAMES, model_config, model_family

    parser = build_parser()
    fit = parser._subparsers._group_actions[0].choices["fit"]  # argparse has no public accessor
    actions = {a.dest: a for a in fit._actions}
    for name in MODEL_NAMES:
        for field in dataclasses.fields(model_family(name).cls.config_class):
            if field.name in ENV_FIELDS:  # read from the env's spaces
                assert f"wm.{field.name}" not in actions, field.name
                continue
            help_text = actions[f"wm.{field.name}"].help
            for preset in MODEL_PRESETS:
                config = model_config(name, preset, obs_dim=3, action_dim=1)
                if name in ("loopwm-fixed",) and field.name in ("halting", "max_iters"):
                    continue  # set by the family itself, documented on the class
                assert f"{preset} {getattr(config, field.name)!r}" in help_text, field.name


def test_docs_results_is_generated_from_the_benchmark_json():
    import importlib.util

    spec = importlib.util.spec_from_file_location("tables", ROOT / "benchmarks" / "tables.py")
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)
    expected = tables.render(tables.TEMPLATE.read_text())
    assert (ROOT / "docs" / "results.md").read_text() == expected, (
        "docs/results.md is out of date: run python benchmarks/tables.py"
    )
    readme = (ROOT / "README.md").read_text()
    assert "<!-- table: " in readme
    assert tables.render_readme(readme) == readme, (
        "the README's tables are out of date: run python benchmarks/tables.py"
    )


def test_readme_is_a_users_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.encode()) < 12_000  # bytes, as the review counts them
    for link in re.findall(r"\]\(((?:docs|videos|benchmarks)/[^)#]+)\)", readme):
        assert (ROOT / link).exists(), link


@pytest.mark.parametrize(
    ("doc", "marker"),
    [
        ("README.md", "build_model"),
        ("docs/api.md", "check_input"),
        ("docs/model.md", "contraction_bound"),
    ],
)
def test_the_docs_python_examples_run(doc, marker, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an example may write a checkpoint
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / doc).read_text(), re.S)
    examples = [b for b in blocks if marker in b]
    assert examples, f"no example with {marker} in {doc}"
    for example in examples:
        exec(compile(example, doc, "exec"), {})
