"""A trainer's run folder: claiming a fresh one, and checking that a resumed run continues the one it claims to.

A new run refuses a non-empty output folder (it would mix two runs' checkpoints and logs); a resumed one needs the
checkpoint it continues, and a config that agrees with the saved one on every field that shapes the result. The
refusal names each differing field with both values, as `policy.lr: saved 0.0003, now 0.001`.
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

_MISSING = object()


def config_differences(saved: Any, now: Any, prefix: str = "") -> list[str]:
    """One line per differing leaf of two JSON-like configs, dotted names, as `a.b: saved X, now Y` (lists of the
    same length are compared item by item, `steps[3].size`; a field only one of them has reads `(absent)`)."""
    if isinstance(saved, Mapping) and isinstance(now, Mapping):
        lines = []
        for key in sorted(set(saved) | set(now), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            lines += config_differences(saved.get(key, _MISSING), now.get(key, _MISSING), name)
        return lines
    if isinstance(saved, list | tuple) and isinstance(now, list | tuple) and len(saved) == len(now):
        return [line for i, (a, b) in enumerate(zip(saved, now, strict=True)) for line in
                config_differences(a, b, f"{prefix}[{i}]")]  # fmt: skip
    if saved == now:
        return []

    def show(value: Any) -> str:
        return "(absent)" if value is _MISSING else repr(value)

    return [f"{prefix or '(config)'}: saved {show(saved)}, now {show(now)}"]


def check_resume_config(saved: Mapping, now: Mapping, source: str | Path, what: str = "config") -> None:
    """Raise ValueError naming every field where `now` differs from the `saved` config of the run in `source`."""
    differences = config_differences(saved, now)
    if differences:
        raise ValueError(
            f"--resume=true with a {what} that differs from the run in {source}: " + "; ".join(differences)
        )


def claim_run_dir(output_dir: str | Path, resume: bool, checkpoint: str | Path) -> Path:
    """Check that `output_dir` may be used: resuming needs `checkpoint` (the one to continue from); a new run needs
    the folder absent or empty. Creates the folder; returns it."""
    output_dir = Path(output_dir)
    if resume:
        if not Path(checkpoint).exists():
            raise FileNotFoundError(f"--resume=true but {checkpoint} does not exist: nothing to resume")
    elif output_dir.exists() and any(output_dir.iterdir()):
        raise FileExistsError(f"{output_dir} is not empty: pass --resume=true to continue it, or another --output_dir")
    output_dir.mkdir(parents=True, exist_ok=True)
    return output_dir
