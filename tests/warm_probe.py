"""A console-script stand-in for tests/test_warm_start.py: says what a command started warm finds, or fails as asked."""

import json
import os
import sys
import time


def main() -> int | None:
    mode = sys.argv[1]
    if mode == "report":
        import numpy as np
        from lerobot.utils.constants import HF_LEROBOT_HOME

        mine = sorted(m for m in sys.modules if m.split(".")[0].startswith(("lerobot_", "so101_")))
        said = {"cwd": os.getcwd(), "argv": sys.argv, "probe": os.environ.get("PROBE"), "home": str(HF_LEROBOT_HOME)}
        print(json.dumps({**said, "draw": float(np.random.rand()), "ours": mine, "path0": sys.path[0]}))
        print("to stderr", file=sys.stderr)
        return None
    if mode == "exit":
        sys.exit(int(sys.argv[2]))
    if mode == "raise":
        raise ValueError("the probe was asked to fail")
    if mode == "sleep":
        time.sleep(float(sys.argv[2]))
        return None
    raise SystemExit(f"unknown mode {mode}")
