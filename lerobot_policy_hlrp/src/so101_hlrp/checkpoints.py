"""Publishing a training checkpoint atomically, shared by the stage-1 and stage-2 trainers."""

import os
import shutil
from pathlib import Path


def publish_checkpoint(tmp: Path, final: Path, keep: int = 2) -> Path:
    """Rename the fully written `tmp` to `final`, re-point `<root>/last` at it, and keep the newest `keep` numbered
    checkpoints: an interrupted save leaves the previous checkpoint and `last` as they were."""
    root = final.parent
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    link = root / ".last-tmp"
    link.unlink(missing_ok=True)
    link.symlink_to(final.name)
    os.replace(link, root / "last")
    numbered = sorted(p for p in root.iterdir() if p.name.isdigit() and p != final)
    for old in numbered[: max(0, len(numbered) - (keep - 1))]:
        shutil.rmtree(old)
    return final
