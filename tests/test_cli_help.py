"""Every console script of the suite parses with LeRobot's `parser.wrap`: `--help` works and lists the config.

The scripts are read from every `*/pyproject.toml`, so a new command is checked without editing this file. Each
`--help` runs as the installed script (a subprocess: a few seconds of imports each, run side by side).
"""

import dataclasses
import importlib
import inspect
import re
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from draccus.wrappers.docstring import get_attribute_docstring, get_preferred_help_text

from so101_run_infra.cli import bracketed_lists, dashed_spellings, renamed_flags

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
def helps() -> dict[str, subprocess.CompletedProcess]:
    def run(script: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(VENV_BIN / script), "--help"], capture_output=True, text=True, timeout=600, cwd=REPO)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(SCRIPTS, pool.map(run, SCRIPTS), strict=True))


def test_every_declared_script_is_found():
    assert len(SCRIPTS) >= 17 and "so101-twin-record" in SCRIPTS and "hlrp-submit" in SCRIPTS


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


def test_renamed_flags_rewrite_old_spellings_and_say_the_new_one(capsys):
    renamed = {"--append": "--resume", "--output-dir": "--output_dir", "--restart": "--restart=true"}
    argv = ["--append=true", "--output-dir", "out", "--restart", "--dataset.root=x", "--restart=false"]
    assert renamed_flags(argv, renamed) == [
        "--resume=true",
        "--output_dir",
        "out",
        "--restart=true",
        "--dataset.root=x",
        "--restart=false",
    ]
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "warning: --append is deprecated and will be removed in the next release; use --resume",
        "warning: --output-dir is deprecated and will be removed in the next release; use --output_dir",
        "warning: --restart is deprecated and will be removed in the next release; use --restart=true",
    ]
    assert renamed_flags(["--resume=true", "--restart", "false"], renamed) == ["--resume=true", "--restart", "false"]
    assert capsys.readouterr().err == ""  # the new spellings pass silently
    # an old flag that became a group's field: its new spelling starts with the old one and must pass unchanged
    assert renamed_flags(["--policy=a", "--policy.path=b"], {"--policy": "--policy.path"}) == [
        "--policy.path=a",
        "--policy.path=b",
    ]


def test_bracketed_lists_join_argparse_lists_and_say_the_new_spelling(capsys):
    argv = ["--sizes", "twin", "real", "--repeats=3", "--row", "a:0:x y", "--row=b:1:z", "--noise_std", "-1", "0.5"]
    assert bracketed_lists(argv, ["--sizes", "--row", "--noise_std"]) == [
        "--sizes=[twin,real]",
        "--repeats=3",
        "--row=[a:0:x y,b:1:z]",  # a repeated flag's values add up, as argparse's action="append"
        "--noise_std=[-1,0.5]",
    ]
    err = capsys.readouterr().err
    assert "use '--sizes=[twin,real]'" in err and "use '--noise_std=[-1,0.5]'" in err
    new = ["--sizes=[twin,real]", "--row", "[a:0:x]", "--repeats", "3"]
    assert bracketed_lists(new, ["--sizes", "--row"]) == new
    assert capsys.readouterr().err == ""


def test_dashed_spellings_map_argparse_flags_to_the_fields():
    assert dashed_spellings("output_dir", "max_frames", "grid") == {
        "--output-dir": "--output_dir",
        "--max-frames": "--max_frames",
    }


def test_old_spelling_reaches_the_new_field(tmp_path):
    """A real command given last release's flags parses them into the new fields (the error names the new one)."""
    missing = tmp_path / "missing.pt"
    proc = subprocess.run(
        [str(VENV_BIN / "segdepth-convert-drqv2"), f"--snapshot={missing}", f"--output-dir={tmp_path / 'out'}"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode != 0
    assert "--snapshot is deprecated and will be removed in the next release; use --snapshot_path" in proc.stderr
    assert "--output-dir is deprecated and will be removed in the next release; use --output_dir" in proc.stderr
    assert f"--snapshot_path {missing} does not exist" in proc.stderr
    assert not (tmp_path / "out").exists()
