"""Running a trainer again over its own output folder: the line it says when there is nothing to do, and the
modification times of everything in the folder, which a run that does nothing (or refuses) leaves as they were."""

from pathlib import Path


def mtimes(folder: Path) -> dict[str, int]:
    """Every file, folder and link under `folder` (and `folder` itself) with its modification time: a file written,
    added or removed changes it."""
    entries = {str(p.relative_to(folder)): p.lstat().st_mtime_ns for p in folder.rglob("*")}
    return {".": folder.lstat().st_mtime_ns, **entries}


def nothing_to_do(folder: Path, summary: str) -> str:
    """The one line a trainer prints over a run it finished with the same settings."""
    return f"{folder}: already trained with these settings ({summary}); nothing to do\n"
