"""Every console script of the suite parses with LeRobot's `parser.wrap`: `--help` works and lists the config.

The scripts are read from every `*/pyproject.toml`, so a new command is checked without editing this file. Every
`--help` runs from the installed entry point in one subprocess (tests/help_all.py: the imports, seconds each, are
paid once); that the installed script files themselves start is checked by the commands other tests run.
"""

import dataclasses
import importlib
import inspect
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from draccus.wrappers.docstring import get_attribute_docstring, get_preferred_help_text

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def console_scripts() -> dict[str, str]:
    """{script name: "module:function"} from every distribution's [project.scripts]."""
    scripts = {}
    for pyproject in sorted(REPO.glob("*/pyproject.toml")):
        scripts.update(tomllib.loads(pyproject.read_text())["project"].get("scripts", {}))
    return scripts


SCRIPTS = console_scripts()


def command_config(entry: str) -> type:
    """The config dataclass of the parser.wrap'd function that the entry point calls (named in its code); for an
    entry point made by so101_run_infra.extras.behind_extra, the command it runs (its `target`)."""
    module_name, function_name = entry.split(":")
    target = getattr(importlib.import_module(module_name), function_name)
    module_name, function_name = getattr(target, "target", entry).split(":")
    module = importlib.import_module(module_name)
    found = []
    for name in getattr(module, function_name).__code__.co_names:
        candidate = getattr(module, name, None)
        if not inspect.isfunction(candidate):
            continue
        params = list(inspect.signature(inspect.unwrap(candidate)).parameters.values())
        if params and dataclasses.is_dataclass(params[0].annotation):
            found.append(params[0].annotation)
    assert len(found) == 1, f"{entry}: expected one config-taking command function, found {found}"
    return found[0]


def _words(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def helps(tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("helps") / "helps.json"
    command = [sys.executable, str(REPO / "tests" / "help_all.py"), str(out), *SCRIPTS]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert run.returncode == 0, run.stderr[-4000:]
    return {
        script: subprocess.CompletedProcess([script, "--help"], r["returncode"], r["stdout"], r["stderr"])
        for script, r in json.loads(out.read_text()).items()
    }


def test_every_declared_script_is_found():
    assert len(SCRIPTS) >= 17 and "so101-twin-record" in SCRIPTS and "so101-submit" in SCRIPTS
    not_installed = [s for s in SCRIPTS if not (VENV_BIN / s).is_file()]
    assert not not_installed, f"declared but not installed in {VENV_BIN}: {not_installed}"
    # the aliases 0.2.0 kept for the old command names are gone
    assert not {"hlrp-submit", "hlrp-make-random-vlm", "so101-precompute-segmentation"} & SCRIPTS.keys()


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_help_lists_every_field_with_its_comment(script, helps):
    proc = helps[script]
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Traceback" not in output, f"{script} --help:\n{output[-4000:]}"
    text = _words(proc.stdout)
    assert "--config_path" in text, f"{script} --help does not offer --config_path"
    config = command_config(SCRIPTS[script])
    for f in dataclasses.fields(config):
        assert re.search(rf"--{f.name}[ .=\]]", text), f"{script} --help does not list --{f.name}"
        comment = _words(get_preferred_help_text(get_attribute_docstring(config, f.name)) or "")
        # argparse shows the comment, re-wrapped; a nested config's comment titles its group instead
        if comment and not dataclasses.is_dataclass(f.type):
            assert comment[:40] in text, f"{script} --help lacks the comment of --{f.name}: {comment!r}"


def test_an_argparse_spelling_of_0_1_is_refused(tmp_path):
    """The spellings the commands took before LeRobot's parser are gone: a real command given them stops with the
    parser's error and writes nothing."""
    missing = tmp_path / "missing.pt"
    proc = subprocess.run(
        [str(VENV_BIN / "segdepth-convert-drqv2"), f"--snapshot={missing}", f"--output-dir={tmp_path / 'out'}"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "unrecognized arguments: --snapshot=" in proc.stderr and "deprecated" not in proc.stderr
    assert not (tmp_path / "out").exists()
