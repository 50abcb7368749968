"""Publishing a training checkpoint atomically: shared by the DrQ-v2 trainer and the HLRP stage trainers.

A checkpoint is written in full under a temporary name, renamed to its final numbered name, and only then are the
named links (`last`, and `best` where a trainer keeps one) re-pointed at it, each by an atomic rename of a fresh
symlink. A job killed at any moment leaves the previous checkpoint and every link as they were.
"""

import os
import shutil
from pathlib import Path


def point_link(root: Path, name: str, target: Path) -> None:
    """Atomically make `root/name` a relative symlink to `target` (a folder inside `root`)."""
    tmp = root / f".{name}-tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target.name)
    os.replace(tmp, root / name)


def linked_checkpoints(root: Path) -> set[str]:
    """Names of the numbered checkpoints some link in `root` (last, best, ...) points at."""
    return {os.readlink(p) for p in root.iterdir() if p.is_symlink() and not p.name.startswith(".")}


def publish_checkpoint(tmp: Path, final: Path, keep: int = 2, links: tuple[str, ...] = ("last",)) -> Path:
    """Rename the fully written `tmp` to `final`, point each of `links` at it, and delete numbered checkpoints
    beyond the newest `keep` that no link points at (so `best` survives however old it is)."""
    if keep < 1:
        raise ValueError(f"keep={keep}: at least the checkpoint just written must be kept")
    root = final.parent
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for name in links:
        point_link(root, name, final)
    protected = linked_checkpoints(root) | {final.name}
    numbered = sorted(p for p in root.iterdir() if p.name.isdigit() and not p.is_symlink() and p != final)
    for old in numbered[: max(0, len(numbered) - (keep - 1))]:
        if old.name not in protected:
            shutil.rmtree(old)
    return final
