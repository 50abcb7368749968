"""Atomic writes: a reader (or a resumed run) sees the old file or folder, or the new one, never half of one.

Files are written to a temporary name in the same folder (same file system, so the rename is atomic), flushed to
disk, then renamed over the target. Folders are written into a sibling staging folder; a folder cannot be renamed
onto a non-empty one, so the old one is moved aside first, the staging folder renamed into place, and only then is
the old one deleted. This module is the only one in the suite that renames files (tests/test_core_toolkit.py
checks that): every trainer, recorder and writer goes through it.

torch and safetensors are imported only by the functions that need them: `so101_core` stays numpy-only.
"""

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _umask_mode() -> int:
    """The mode a plain open() would give a new file: mkstemp makes its files 0600, and the rename keeps that, which
    would leave every checkpoint and dataset unreadable to the other users of a shared machine or cluster."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix, so writers that infer the format from it work); when the
    block ends normally the file is synced and renamed over `path`, otherwise it is deleted and `path` untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _fsync(tmp)
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_with(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Atomically create `path` by calling `write(tmp_path)` (any writer that takes a file name)."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    return write_with(path, lambda tmp: tmp.write_bytes(data))


def write_text(path: str | Path, text: str) -> Path:
    return write_with(path, lambda tmp: tmp.write_text(text))


def write_json(path: str | Path, data: Any, indent: int | None = 2, **dumps_kwargs: Any) -> Path:
    return write_text(path, json.dumps(data, indent=indent, **dumps_kwargs))


def write_jsonl(path: str | Path, rows: list[dict]) -> Path:
    """One JSON object a line, written whole or not at all."""
    return write_text(path, "".join(json.dumps(row) + "\n" for row in rows))


def torch_save(obj: Any, path: str | Path) -> Path:
    import torch

    return write_with(path, lambda tmp: torch.save(obj, tmp))


def save_safetensors(tensors: dict, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    from safetensors.torch import save_file

    return write_with(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


# ----- folders --------------------------------------------------------------------------------------------------
def staging_path(folder: str | Path) -> Path:
    """Where `folder` is staged: `.<name>.tmp` beside it (the same path for every process of a multi-process job)."""
    folder = Path(folder)
    return folder.with_name(f".{folder.name}.tmp")


def staging_folder(folder: str | Path, create: bool = True) -> Path:
    """The sibling folder `folder` is written into before it is swapped in: `.<name>.tmp`, emptied of what a crashed
    write left (created when `create`; some writers, LeRobotDataset.create, insist on making it themselves)."""
    staging = staging_path(folder)
    shutil.rmtree(staging, ignore_errors=True)
    if create:
        staging.mkdir(parents=True)
    else:
        staging.parent.mkdir(parents=True, exist_ok=True)
    return staging


def replace_folder(staging: str | Path, folder: str | Path) -> Path:
    """Swap the fully written `staging` folder in as `folder`, which may exist (it is then deleted after the swap).
    A crash between the two renames leaves the old folder under `.<name>.old`, and the next swap cleans it up."""
    staging, folder = Path(staging), Path(folder)
    old = folder.with_name(f".{folder.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.is_symlink() or folder.is_file():
        folder.unlink()
    elif folder.exists():
        os.replace(folder, old)
    os.replace(staging, folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


@contextmanager
def atomic_folder(folder: str | Path, create: bool = True) -> Iterator[Path]:
    """Yield a staging folder to write `folder`'s contents into; swapped in when the block ends normally, deleted
    (leaving `folder` as it was) when it raises."""
    staging = staging_folder(folder, create=create)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    replace_folder(staging, folder)


def point_symlink(link: str | Path, target: str) -> Path:
    """Make `link` a symlink to `target` (relative to the link's folder), replacing what was there atomically."""
    link = Path(link)
    tmp = link.with_name(f".{link.name}-tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    os.replace(tmp, link)
    return link


def move_aside(path: str | Path, aside: str | Path) -> Path:
    """Rename `path` to `aside` (which must not exist), keeping it for a person to look at instead of deleting it."""
    aside = Path(aside)
    if aside.exists():
        raise FileExistsError(f"cannot move {path} aside to {aside}: it exists")
    os.replace(path, aside)
    return aside


def claim_once(path: str | Path, owner: str) -> str:
    """Create `path` holding `owner` unless it exists, and return the owner it holds: of several processes (on several
    machines) claiming the same path, the first wins and every one of them reads the same owner. The claim is linked
    into place whole (os.link is atomic, also on NFS), so no one reads a half-written owner."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{owner}.{os.getpid()}")
    tmp.write_text(owner)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_text()
