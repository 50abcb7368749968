"""The stage runner the demo and the examples share: a command's output in a log file, a progress bar on the console."""

import os
import re
import subprocess
import time
from pathlib import Path

from tqdm import tqdm

# The repository, where every stage's command runs (so101_devtools is only ever installed editable from it).
REPO = Path(__file__).resolve().parents[3]


def least_step(logged: str) -> int:
    """The least step a LeRobot log position can stand for: exact below 1000, rounded to thousands above ("2K" is
    any step from 1500 to 2499), so the bar never runs ahead of the training."""
    if logged.endswith("K"):
        return max(0, round((float(logged[:-1]) - 0.5) * 1000))
    return int(float(logged))


def run_logged(
    args: list[str], log: Path, desc: str, total: int | None = None, pattern: str | None = None, env: dict | None = None
) -> float:
    """Run a command with its output in `log`; a progress bar advances on lines matching `pattern` (its first
    group is the position). Returns the wall seconds; a failure shows the log's tail."""
    start = time.perf_counter()
    # Without a total there is nothing to count: the bar shows the elapsed time only.
    bar_format = None if total else "{desc}: {elapsed}"
    with open(log, "w") as out, tqdm(total=total, desc=desc, unit="", bar_format=bar_format, leave=True) as bar:
        proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
            env={**os.environ, **(env or {})},
        )
        for line in proc.stdout:
            out.write(line)
            match = re.search(pattern, line) if pattern else None
            # lerobot-train's checkpoint line is the one place it logs a step past 999 exactly
            exact = re.search(r"Checkpoint policy after step (\d+)", line)
            if (match or exact) and total:
                position = min(total, int(exact.group(1)) if exact else least_step(match.group(1)))
                bar.update(max(0, position - bar.n))
                loss = re.search(r"loss:([0-9.]+)", line)
                if loss:
                    bar.set_postfix(loss=loss.group(1))
        code = proc.wait()
        if total and code == 0:
            bar.update(total - bar.n)
    if code != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-40:])
        raise SystemExit(f"[demo] {desc} failed (exit {code}); last lines of {log}:\n{tail}")
    return time.perf_counter() - start
