"""The stage runner the demo and the examples share: a command's output in a log file, a progress bar on the console."""

import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from so101_devtools import warm_start

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
    ended: dict[str, int] = {}
    with tqdm(total=total, desc=desc, unit="", bar_format=bar_format, leave=True) as bar:
        for line in _output(args, log, {**os.environ, **(env or {})}, ended):
            match = re.search(pattern, line) if pattern else None
            # lerobot-train's checkpoint line is the one place it logs a step past 999 exactly
            exact = re.search(r"Checkpoint policy after step (\d+)", line)
            if (match or exact) and total:
                position = min(total, int(exact.group(1)) if exact else least_step(match.group(1)))
                bar.update(max(0, position - bar.n))
                loss = re.search(r"loss:([0-9.]+)", line)
                if loss:
                    bar.set_postfix(loss=loss.group(1))
        code = ended["code"]
        if total and code == 0:
            bar.update(total - bar.n)
    if code != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-40:])
        raise SystemExit(f"[demo] {desc} failed (exit {code}); last lines of {log}:\n{tail}")
    return time.perf_counter() - start


def _output(args: list[str], log: Path, env: dict[str, str], ended: dict[str, int]) -> Iterator[str]:
    """The command's output lines (stdout and stderr together) as it writes them to `log`; its exit code goes to
    ended["code"]. Started warm where the test suite asks (so101_devtools.warm_start)."""
    log.write_text("")
    started = warm_start.start(args, REPO, env, log, log) if warm_start.enabled() else None
    if started is None:
        with open(log, "w") as out:
            proc = subprocess.Popen(
                args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO, env=env
            )
            for line in proc.stdout:
                out.write(line)
                yield line
            ended["code"] = proc.wait()
        return
    pending, code = "", None
    try:
        with open(log, errors="replace") as written:
            while code is None:
                code = started.wait(timeout=0.5)
                pending += written.read()
                *lines, pending = pending.split("\n")
                yield from (line + "\n" for line in lines)
    finally:
        if code is None:  # interrupted while it ran: stop it, as a terminal's Ctrl-C stops a subprocess
            started.abandon()
    if pending:
        yield pending
    ended["code"] = code
