"""Run `--help` of console scripts in one process (imports once) and write what each printed.

    python tests/help_all.py OUT.json SCRIPT [SCRIPT ...]

Each script's entry point (as installed, from its distribution's entry points) runs with `sys.argv = [script,
"--help"]`; its exit code, stdout and stderr (a traceback included, if it raised) are written to OUT.json. The test
runs this file in a subprocess with a time limit.
"""

import contextlib
import importlib.metadata
import io
import json
import sys
import traceback
from pathlib import Path


def run_help(script: str, entry_points: dict) -> dict:
    out, err = io.StringIO(), io.StringIO()
    saved, sys.argv = sys.argv, [script, "--help"]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            entry_points[script].load()()
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException:  # a crash is what the test reports, with its traceback
        code = 1
        err.write(traceback.format_exc())
    finally:
        sys.argv = saved
    return {"returncode": code, "stdout": out.getvalue(), "stderr": err.getvalue()}


def main() -> int:
    target, scripts = Path(sys.argv[1]), sys.argv[2:]
    entry_points = {ep.name: ep for ep in importlib.metadata.entry_points(group="console_scripts")}
    missing = [s for s in scripts if s not in entry_points]
    results = {s: {"returncode": 127, "stdout": "", "stderr": f"{s}: not installed"} for s in missing}
    for script in scripts:
        if script not in missing:
            print(script, file=sys.stderr, flush=True)
            results[script] = run_help(script, entry_points)
    target.write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
