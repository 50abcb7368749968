"""Every example and benchmark script parses with LeRobot's `parser.wrap`, as the suite's commands do (test_cli_help).

From the source (AST, no imports): no script imports argparse; each has one `@parser.wrap()` function over a config
dataclass of its own file with a comment on every field, and a `main` that calls `prepare_command_line` (last
release's spellings, %-safe help) before it. A thin script that only runs an installed module's `main`
(scripts/demo.py) is read through that module. Then one subprocess imports every script, renders its `--help` as
`parser.wrap` does, and builds each benchmark's config from its defaults (a benchmark runs with no flags, or its
error names the flag it needs).
"""

import ast
import importlib.util
import json
import os
import re
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(
    [*REPO.glob("examples/*.py"), *REPO.glob("benchmarks/*.py"), *REPO.glob("scripts/*.py")],
    key=lambda p: str(p.relative_to(REPO)),
)
IDS = [str(p.relative_to(REPO)) for p in SCRIPTS]


def command_file(path: Path) -> Path:
    """The file holding a script's command: the script itself or, for a thin script that only imports an installed
    module's `main` and calls it (scripts/demo.py), that module's file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    runs = [n.module for n in tree.body if isinstance(n, ast.ImportFrom) and [a.name for a in n.names] == ["main"]]
    if runs and not any(isinstance(n, ast.FunctionDef | ast.ClassDef) for n in tree.body):
        return Path(importlib.util.find_spec(runs[0]).origin)
    return path


def _is_parser_wrap(decorator: ast.expr) -> bool:
    func = decorator.func if isinstance(decorator, ast.Call) else decorator
    return isinstance(func, ast.Attribute) and func.attr == "wrap" and getattr(func.value, "id", None) == "parser"


def _is_dataclass(node: ast.ClassDef) -> bool:
    return any(
        getattr(d.func if isinstance(d, ast.Call) else d, "id", None) == "dataclass" for d in node.decorator_list
    )


def _commented_lines(path: Path) -> set[int]:
    """Line numbers a field comment covers: a comment's own line and, for a comment-only line, the line below it."""
    covered = set()
    with open(path, "rb") as f:
        tokens = list(tokenize.tokenize(f.readline))
    for i, tok in enumerate(tokens):
        if tok.type != tokenize.COMMENT:
            continue
        covered.add(tok.start[0])
        if tokens[i - 1].type in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            covered.add(tok.start[0] + 1)  # a comment block above a field ends on the line before it
    return covered


def script_command(path: Path) -> dict:
    """{"function", "config", "fields": [(class, field, commented)]} of the script's parser.wrap'd function."""
    path = command_file(path)
    tree = ast.parse(path.read_text(), filename=str(path))
    wrapped = [
        n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and any(map(_is_parser_wrap, n.decorator_list))
    ]
    assert len(wrapped) == 1, f"{path.name}: expected one @parser.wrap() function, found {[f.name for f in wrapped]}"
    function = wrapped[0]
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef) and _is_dataclass(n)}
    annotation = function.args.args[0].annotation
    config = getattr(annotation, "id", None)
    assert config in classes, (
        f"{path.name}: {function.name} takes {ast.unparse(annotation)}, not a dataclass of its file"
    )
    commented = _commented_lines(path)
    fields, todo = [], [config]
    while todo:
        name = todo.pop()
        for stmt in classes[name].body:
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                nested = getattr(stmt.annotation, "id", None)
                if nested in classes:  # a group: its flags are dotted, its class titles the group in --help
                    todo.append(nested)
                else:
                    fields.append((name, stmt.target.id, stmt.lineno in commented))
    return {"function": function.name, "config": config, "fields": fields, "tree": tree}


@pytest.mark.parametrize("path", SCRIPTS, ids=IDS)
def test_script_does_not_import_argparse(path):
    for node in ast.walk(ast.parse(command_file(path).read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        names += [node.module] if isinstance(node, ast.ImportFrom) else []
        assert "argparse" not in names, f"{path.name} imports argparse; parse with lerobot.configs.parser.wrap"


@pytest.mark.parametrize("path", SCRIPTS, ids=IDS)
def test_script_parses_a_commented_config_with_parser_wrap(path):
    command = script_command(path)
    uncommented = [f"{cls}.{name}" for cls, name, commented in command["fields"] if not commented]
    assert not uncommented, f"{path.name}: fields without a comment (--help shows it): {uncommented}"
    functions = {n.name: n for n in command["tree"].body if isinstance(n, ast.FunctionDef)}
    assert "main" in functions, f"{path.name} has no main()"

    def calls(name: str) -> list:
        return [getattr(n.func, "id", None) for n in ast.walk(functions[name]) if isinstance(n, ast.Call)]

    def prepares_then_parses(name: str) -> bool:
        made = calls(name)
        wrapped = command["function"]
        return "prepare_command_line" in made and wrapped in made[made.index("prepare_command_line") :]

    # main itself, or a helper main calls (the demo's config_from_command_line, which the tests use)
    assert any(prepares_then_parses(n) for n in ["main", *calls("main")] if n in functions), (
        f"{path.name}: main() must call prepare_command_line() and then {command['function']}()"
    )


CHECK = """
import contextlib, dataclasses, importlib.util, io, json, sys
from pathlib import Path
from draccus.wrappers.docstring import get_attribute_docstring, get_preferred_help_text
from lerobot.configs.parser import print_scoped_help
from so101_run_infra.cli import _use_percent_safe_help

_use_percent_safe_help()  # what prepare_command_line does in every script's main (checked above)
out = {}
for path, (source, config) in json.loads(sys.argv[1]).items():
    path = Path(path)
    spec = importlib.util.spec_from_file_location(f"script_{path.parent.name}_{path.stem}", source)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # draccus reads the field comments from the class's source, found through it
    spec.loader.exec_module(module)
    config_class = getattr(module, config)
    help_text = io.StringIO()
    with contextlib.redirect_stdout(help_text):
        print_scoped_help(config_class, [])
    comments, todo = {}, [config_class]
    while todo:
        cls = todo.pop()
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(f.type):  # a group: its class titles it in --help
                todo.append(f.type)
                comments[f"{cls.__name__}.{f.name}"] = None
            else:
                comments[f"{cls.__name__}.{f.name}"] = get_preferred_help_text(get_attribute_docstring(cls, f.name))
    defaults = None
    if path.parent.name == "benchmarks":
        try:
            config_class()
            defaults = "ok"
        except Exception as err:
            defaults = f"{type(err).__name__}: {err}"
    out[str(path)] = {"help": help_text.getvalue(), "comments": comments, "defaults": defaults}
print("RESULT" + json.dumps(out))
"""


@pytest.fixture(scope="module")
def rendered() -> dict:
    configs = {str(p): [str(command_file(p)), script_command(p)["config"]] for p in SCRIPTS}
    proc = subprocess.run(
        [sys.executable, "-c", CHECK, json.dumps(configs)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO,
        env={**os.environ, "COLUMNS": "200"},
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    assert proc.returncode == 0 and lines, f"importing the scripts failed:\n{proc.stderr[-4000:]}"
    return json.loads(lines[-1].removeprefix("RESULT"))


@pytest.mark.parametrize("path", SCRIPTS, ids=IDS)
def test_script_help_lists_every_field_and_a_benchmark_runs_on_defaults(path, rendered):
    result = rendered[str(path)]
    text = " ".join(result["help"].split())
    assert "--config_path" in text, f"{path.name} --help does not offer --config_path"
    for cls, name, _ in script_command(path)["fields"]:
        assert re.search(rf"--([a-z_]+\.)?{name}[ .=\]]", text), f"{path.name} --help does not list {cls}.{name}"
        comment = result["comments"][f"{cls}.{name}"]
        if comment is not None:  # None: a group from another module (the demo's record)
            comment = " ".join(comment.split())
            assert comment and comment[:40] in text, f"{path.name} --help lacks the comment of {cls}.{name}"
    if path.parent.name == "benchmarks":  # runs with no flags, or names the one it needs (twin_policies' --policies)
        ok = result["defaults"] == "ok" or result["defaults"].startswith("ValueError: --")
        assert ok, f"{path.name}: its config does not build from its defaults: {result['defaults']}"
