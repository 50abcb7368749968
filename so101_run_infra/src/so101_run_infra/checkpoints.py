"""Publishing a training checkpoint atomically: shared by the DrQ-v2 trainer and the HLRP stage trainers.

A checkpoint is written in full under a temporary name, renamed to its final numbered name, and only then are the
named links (`last`, and `best` where a trainer keeps one) re-pointed at it, each by an atomic rename of a fresh
symlink. A job killed at any moment leaves the previous checkpoint and every link as they were.
"""

import os
import shutil
from pathlib import Path

from .atomic import point_symlink, replace_folder, staging_folder


def save_policy(folder: Path, policy, *pipelines) -> Path:
    """A LeRobot pretrained-model folder: `policy.save_pretrained(folder)`, then each processor pipeline's.

    Duck-typed (anything with `save_pretrained(folder)`), so the core stays numpy-only. Write into a staging folder
    (`atomic.atomic_folder`, `checkpoint_staging`) for a checkpoint that appears whole or not at all.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for part in (policy, *pipelines):
        part.save_pretrained(folder)
    return folder


def point_link(root: Path, name: str, target: Path) -> None:
    """Atomically make `root/name` a relative symlink to `target` (a folder inside `root`)."""
    point_symlink(root / name, target.name)


def checkpoint_staging(final: Path) -> Path:
    """The empty folder a checkpoint is written into before `publish_checkpoint` swaps it in as `final`."""
    return staging_folder(final)


def linked_checkpoints(root: Path) -> set[str]:
    """Names of the numbered checkpoints some link in `root` (last, best, ...) points at."""
    return {os.readlink(p) for p in root.iterdir() if p.is_symlink() and not p.name.startswith(".")}


def publish_checkpoint(tmp: Path, final: Path, keep: int = 2, links: tuple[str, ...] = ("last",)) -> Path:
    """Rename the fully written `tmp` to `final`, point each of `links` at it, and delete numbered checkpoints
    beyond the newest `keep` that no link points at (so `best` survives however old it is)."""
    if keep < 1:
        raise ValueError(f"keep={keep}: at least the checkpoint just written must be kept")
    root = final.parent
    replace_folder(tmp, final)
    for name in links:
        point_link(root, name, final)
    protected = linked_checkpoints(root) | {final.name}
    numbered = sorted(p for p in root.iterdir() if p.name.isdigit() and not p.is_symlink() and p != final)
    for old in numbered[: max(0, len(numbered) - (keep - 1))]:
        if old.name not in protected:
            shutil.rmtree(old)
    return final
