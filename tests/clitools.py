"""Running the stock lerobot-* commands from tests."""

import os
import subprocess
import sys
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def run_cli(args: list[str], cwd: Path, timeout: int = 600, check: bool = True) -> subprocess.CompletedProcess:
    """Run a stock lerobot-* command (or python) from the test venv; on failure show the tail of its output."""
    exe = args[0] if args[0] == sys.executable else str(VENV_BIN / args[0])
    proc = subprocess.run(
        [exe, *args[1:]], cwd=cwd, capture_output=True, text=True, timeout=timeout, env={**os.environ}
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {proc.returncode}:\n{(proc.stdout + proc.stderr)[-6000:]}")
    return proc
