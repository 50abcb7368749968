"""Parse every command the README and docs/ show, with the parser the command itself uses, without running it.

    python tests/docs_commands.py README.md docs/*.md [--json=OUT]

A command shown in a ```bash block is one line (backslash continuations joined), optionally after `VAR=value`
prefixes and a `torchrun ...`/`accelerate launch ...` launcher. Each is checked by what it is:
- a `parser.wrap` command (every `lerobot-*` one the docs show, every suite console script, `python examples/*.py`):
  its entry point runs in this process with its real `sys.argv` until LeRobot's parser has built the config from
  the flags and `--config_path` file, then stops. A misspelt flag, a missing config file, a bad `--policy.type`
  fail here the way they would for the user. A `--policy.path` that does not exist on this machine (a checkpoint
  an earlier command on the page trains, or a Hub id) is parsed as the policy type that earlier command trained, or
  as the type its name contains, with the command's `--policy.*` overrides applied;
- a command with no parser of LeRobot's (`pip install`, `bash scripts/*.sh`, ...): it must be in `COVERED`, which
  names the test that runs it; an unknown command fails the check, so a new kind of command gets a check.

Every entry point runs in one process (imports once); the test runs this file in a subprocess with a time limit, so a
command that, unexpectedly, starts working instead of parsing is stopped there.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import importlib
import importlib.metadata
import importlib.util
import io
import json
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Commands with no LeRobot parser, and the test that runs each (checked to exist and to name the command).
COVERED: dict[str, tuple[str, str]] = {
    "bash scripts/test.sh": (".ci/run", "scripts/test.sh"),
    "bash scripts/setup.sh": ("scripts/test.sh", "scripts/setup.sh"),
    "bash scripts/build_wheels.sh": ("tests/test_dependencies.py", "build_wheels.sh"),
    "bash scripts/gpu_site.sh": ("tests/test_gpu_check.py", "gpu_site.sh"),
    "pip install": ("tests/test_dependencies.py", "--find-links"),
    "lerobot-find-port": ("tests/test_docs.py", "lerobot-find-port"),
}
# Shell scripts that pass their arguments to a parser.wrap script: checked as that script.
SCRIPT_FRONTS = {"scripts/demo.sh": "scripts/demo.py"}
# `python -m MODULE` commands whose parsed entry is not the module's `main`.
MODULE_ENTRIES = {"lerobot.async_inference.robot_client": "async_client"}
# LeRobot commands that parse with argparse: checked against their --help.
ARGPARSE_COMMANDS = {"lerobot-find-cameras"}
LAUNCHERS = {"torchrun": 0, "accelerate": 1}  # how many words the launcher's own name takes ("accelerate launch")
LAUNCHER_SWITCHES = {"--cpu", "--multi_gpu", "--standalone", "--no-python"}
POLICY_TYPE_WORDS = ("segdepth", "segvla", "smolvla", "imf", "hlrp", "diffusion", "act")


@dataclass
class Shown:
    """One command as a page shows it."""

    page: str
    line: int
    text: str
    argv: list[str] = field(default_factory=list)


def shown_commands(page: Path) -> list[Shown]:
    """Every command in the page's ```bash blocks, continuations joined, comments and blank lines dropped."""
    out: list[Shown] = []
    in_bash, pending, start = False, "", 0
    for number, raw in enumerate(page.read_text().splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("```"):
            in_bash = not in_bash and stripped[3:].strip() in ("bash", "sh", "shell", "console")
            continue
        if not in_bash or (not pending and (not stripped or stripped.startswith("#"))):
            continue
        if not pending:
            start = number
        # An end-of-line comment is the page's, not the command's.
        code = re.sub(r"\s+#\s.*$", "", stripped)
        if code.endswith("\\"):
            pending += code[:-1] + " "
            continue
        name = str(page.relative_to(ROOT)) if page.is_relative_to(ROOT) else str(page)
        out.append(Shown(name, start, pending + code))
        pending = ""
    return out


def command_words(text: str) -> list[str]:
    """The command's words without `VAR=value` prefixes or a `torchrun`/`accelerate launch` launcher."""
    words = shlex.split(text)
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):
        words = words[1:]
    if len(words) > 1 and words[0] == "bash" and words[1] in SCRIPT_FRONTS:
        front = ROOT / words[1]
        if f'{SCRIPT_FRONTS[words[1]]} "$@"' not in front.read_text():
            raise ValueError(f"{words[1]} no longer hands its arguments to {SCRIPT_FRONTS[words[1]]}")
        words = ["python", SCRIPT_FRONTS[words[1]], *words[2:]]
    if words and words[0] in LAUNCHERS:
        words = words[1 + LAUNCHERS[words[0]] :]
        while words and words[0].startswith("-") and words[0] not in ("-m", "--module"):
            # `--flag=value` and bare switches take one word; `--flag value` two
            takes_value = "=" not in words[0] and len(words) > 1 and not words[1].startswith("-")
            words = words[2 if takes_value and words[0] not in LAUNCHER_SWITCHES else 1 :]
        if words and words[0] in ("-m", "--module"):
            words = ["python", "-m", *words[1:]]
    return words


class _Parsed(Exception):
    def __init__(self, cfg: object) -> None:
        self.cfg = cfg


def _entry_point(words: list[str]):
    """The callable a command line starts, and the argv it sees."""
    if words[0] in ("python", "python3") or words[0].endswith("/python"):
        if words[1] == "-m":
            module = importlib.import_module(words[2])
            return getattr(module, MODULE_ENTRIES.get(words[2], "main")), [words[2], *words[3:]]
        path = ROOT / words[1]
        if not path.is_file():
            raise FileNotFoundError(f"{words[1]} does not exist in the repository")
        spec = importlib.util.spec_from_file_location(f"docs_example_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module.main, words[1:]
    found = [ep for ep in importlib.metadata.entry_points(group="console_scripts") if ep.name == words[0]]
    if not found:
        raise FileNotFoundError(f"no console script named {words[0]!r} is installed")
    return found[0].load(), words


class _PolicyPaths:
    """Where each earlier command on the page writes a policy of which type, for `--policy.path` of later ones."""

    def __init__(self) -> None:
        self.trained: dict[str, str] = {}

    def remember(self, cfg: object) -> None:
        policy, out = getattr(cfg, "policy", None), getattr(cfg, "output_dir", None)
        kind = getattr(policy, "type", None)
        if isinstance(kind, str) and out:
            self.trained[str(out).rstrip("/")] = kind

    def type_of(self, path: str) -> str:
        for out, kind in self.trained.items():
            if path == out or path.startswith(out + "/"):
                return kind
        name = Path(path).name if Path(path).name != "pretrained_model" else path
        for kind in POLICY_TYPE_WORDS:
            if re.search(rf"(^|[^a-z]){kind}([^a-z]|$)", name.lower()):
                return kind
        raise ValueError(
            f"--policy.path={path} does not exist here, no earlier command on the page trains it, and its name "
            f"names no policy type ({', '.join(POLICY_TYPE_WORDS)}): name the type in the path"
        )


def _parse_only(entry, argv: list[str], paths: _PolicyPaths) -> object:
    """Run `entry` with `argv` until its parser has built the config; return that config."""
    import draccus.argparsing
    from lerobot.configs.policies import PreTrainedConfig

    # Every draccus parse (LeRobot's parser.wrap, draccus.wrap as in lerobot-calibrate, a config's own from_pretrained)
    # ends in ArgumentParser.parse_args: the first one of the command stops it, before it touches a robot or a file.
    real_parse_args, real_from_pretrained = (
        draccus.argparsing.ArgumentParser.parse_args,
        PreTrainedConfig.from_pretrained.__func__,
    )
    stop = [True]

    def parse_args_then_stop(self, *args, **kwargs):
        cfg = real_parse_args(self, *args, **kwargs)
        if stop[0]:
            raise _Parsed(cfg)
        return cfg

    def from_pretrained(cls, name_or_path, *args, cli_overrides=None, **kwargs):
        stop[0] = False  # a policy config parsed inside the command's own parse is part of it
        try:
            if Path(name_or_path).exists():
                return real_from_pretrained(cls, name_or_path, *args, cli_overrides=cli_overrides, **kwargs)
            kind = paths.type_of(str(name_or_path))
            return draccus.parse(PreTrainedConfig.get_choice_class(kind), None, args=list(cli_overrides or []))
        finally:
            stop[0] = True

    saved_argv = sys.argv
    draccus.argparsing.ArgumentParser.parse_args = parse_args_then_stop
    PreTrainedConfig.from_pretrained = classmethod(from_pretrained)
    sys.argv = list(argv)
    try:
        entry()
    except _Parsed as parsed:
        cfg = parsed.cfg
    else:
        raise RuntimeError("the command finished without parsing a config: it has no LeRobot parser")
    finally:
        draccus.argparsing.ArgumentParser.parse_args = real_parse_args
        PreTrainedConfig.from_pretrained = classmethod(real_from_pretrained)
        sys.argv = saved_argv
    # lerobot-train reads --policy.path in validate(), after parsing; do that part of it.
    resolve = getattr(cfg, "_resolve_pretrained_from_cli", None)
    if resolve is not None:
        sys.argv = list(argv)
        PreTrainedConfig.from_pretrained = classmethod(from_pretrained)
        try:
            resolve()
        finally:
            PreTrainedConfig.from_pretrained = classmethod(real_from_pretrained)
            sys.argv = saved_argv
    return cfg


def _covered(text: str, words: list[str]) -> str | None:
    joined = " ".join(words)
    for prefix, (test, needle) in COVERED.items():
        if joined == prefix or joined.startswith(prefix + " "):
            test_path = ROOT / test
            if not test_path.is_file() or needle not in test_path.read_text():
                return f"{prefix!r} is meant to be run by {test}, which does not mention {needle!r}"
            return ""
    return None


def check(shown: Shown, paths: _PolicyPaths) -> str:
    """'' when the command parses; otherwise why not."""
    try:
        words = command_words(shown.text)
    except ValueError as e:
        return f"not a shell command: {e}"
    if not words:
        return "empty command"
    covered = _covered(shown.text, words)
    if covered is not None:
        return covered
    if words[0] in ARGPARSE_COMMANDS:
        return _check_argparse_help(words)
    said = io.StringIO()
    try:
        entry, argv = _entry_point(words)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(said):
            cfg = _parse_only(entry, argv, paths)
    except SystemExit as e:
        last = [line.strip() for line in said.getvalue().splitlines() if line.strip()][-1:]
        return f"the parser exited ({e.code}): " + " ".join(last)
    except BaseException as e:
        cause = f" ({type(e.__cause__).__name__}: {e.__cause__})" if e.__cause__ else ""
        return f"{type(e).__name__}: {e}{cause}"
    paths.remember(cfg)
    return ""


def _check_argparse_help(words: list[str]) -> str:
    entry, argv = _entry_point(words)
    out = io.StringIO()
    saved = sys.argv
    sys.argv = [argv[0], "--help"]
    try:
        with contextlib.redirect_stdout(out):
            entry()
    except SystemExit:
        pass
    finally:
        sys.argv = saved
    flags = {w.split("=", 1)[0] for w in argv[1:] if w.startswith("--")}
    missing = sorted(f for f in flags if f not in out.getvalue())
    return f"not in its --help: {', '.join(missing)}" if missing else ""


def read_field_comments_once() -> None:
    """draccus reads a field's comment (its --help text) from its class's source each time it builds a parser: most
    of this check's time, as every command builds one. Sources do not change within this process, so each field's
    is read once; what is parsed is not touched."""
    from draccus.wrappers import docstring

    read = functools.cache(docstring.get_attribute_docstring)
    docstring.get_attribute_docstring = lambda cls, name: copy.copy(read(cls, name))


def main() -> int:
    read_field_comments_once()
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("pages", nargs="+", type=Path)
    cli.add_argument("--json", type=Path, help="write every command and its verdict here")
    args = cli.parse_args()
    from lerobot.utils.import_utils import register_third_party_plugins

    register_third_party_plugins()
    results = []
    for page in args.pages:
        paths = _PolicyPaths()
        for shown in shown_commands(page.resolve()):
            print(f"{shown.page}:{shown.line}: {shown.text[:100]}", file=sys.stderr, flush=True)
            verdict = check(shown, paths)
            results.append({"page": shown.page, "line": shown.line, "command": shown.text, "error": verdict})
    failed = [r for r in results if r["error"]]
    for r in failed:
        print(f"FAILED {r['page']}:{r['line']}: {r['command']}\n    {r['error']}")
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
