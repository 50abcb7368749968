"""The stage runner the demo and the examples share: a command's output in a log file, a progress bar on the console."""

import os
import re
import subprocess
import time
from pathlib import Path

from tqdm import tqdm

# The repository, where every stage's command runs (so101_devtools is only ever installed editable from it).
REPO = Path(__file__).resolve().parents[3]


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
            if match and total:
                # LeRobot logs steps rounded ("3K" at step 2600): never past the total
                position = min(total, int(float(match.group(1).replace("K", "e3"))))
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
