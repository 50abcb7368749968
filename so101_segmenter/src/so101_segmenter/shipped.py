"""The twin segmenter that ships inside this package, where fine-tuning on the user's own labelled frames starts
(`so101-seg-train --model.init_from=shipped`) with no render or training first.

Its folder, `twin_segmenter/` beside this module (package data), is a `save_segmenter` folder (config.json,
model.safetensors) plus `ship.json` (version, where it came from, its recipe and mIoU per look), `README.md` (the
model card made from it) and `SHA256SUMS`, in `sha256sum`'s format, so `sha256sum -c SHA256SUMS` checks it by hand
too. Every load checks every file against it first: a file damaged in a copy, a partial download or an edit is
refused in one line naming it, instead of fine-tuning from weights nobody trained. `scripts/ship_segmenter.py`
writes the folder from a `so101-seg-train` run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

from so101_run_infra.atomic import atomic_folder, write_text

from .model import CONFIG_NAME, WEIGHTS_NAME

log = logging.getLogger(__name__)

SHIPPED = "shipped"  # the --model.init_from value that names it
FOLDER = Path(__file__).with_name("twin_segmenter")
CHECKSUMS = "SHA256SUMS"
MANIFEST = "ship.json"
CARD = "README.md"
# What a load cannot do without; SHA256SUMS lists these and the manifest and card besides.
REQUIRED = (CONFIG_NAME, WEIGHTS_NAME, MANIFEST)


class ShippedSegmenterError(ValueError):
    """The shipped segmenter's folder is incomplete or a file in it does not match its checksum."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_checksums(folder: Path) -> dict[str, str]:
    """file name -> sha256 hex digest, from `folder`/SHA256SUMS (`<digest>  <name>` lines, as sha256sum writes)."""
    sums = folder / CHECKSUMS
    if not sums.is_file():
        raise ShippedSegmenterError(f"{sums} is missing, so the shipped segmenter cannot be checked: reinstall "
                                    f"so101_segmenter")  # fmt: skip
    listed = {}
    for number, line in enumerate(sums.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name or "/" in name:
            raise ShippedSegmenterError(f"{sums}:{number}: expected '<64 hex digits>  <file name>', got {line!r}")
        listed[name.lstrip("*")] = digest.lower()
    return listed


def verify(folder: Path = FOLDER) -> dict:
    """Check every file of a shipped segmenter folder against its SHA256SUMS; return its manifest (ship.json).

    Raises ShippedSegmenterError naming the first file that is missing, unlisted or does not match."""
    folder = Path(folder)
    listed = read_checksums(folder)
    for name in REQUIRED:
        if name not in listed:
            raise ShippedSegmenterError(f"{folder / CHECKSUMS} lists no checksum for {name}: reinstall so101_segmenter")
    for name, expected in listed.items():
        path = folder / name
        if not path.is_file():
            raise ShippedSegmenterError(f"{path} is missing from the shipped segmenter: reinstall so101_segmenter")
        actual = sha256(path)
        if actual != expected:
            raise ShippedSegmenterError(
                f"{path} is corrupted: its sha256 is {actual[:16]}..., {CHECKSUMS} says {expected[:16]}...; "
                f"reinstall so101_segmenter (or ship it again with scripts/ship_segmenter.py)"
            )
    return json.loads((folder / MANIFEST).read_text())


def is_shipped(value: str | Path | None) -> bool:
    return value is not None and str(value) == SHIPPED


def resolve_init_from(value: str | Path) -> Path:
    """The segmenter folder `--model.init_from` names: the package's own, checked, for `shipped`; else the folder,
    which must exist (a FileNotFoundError that names the flag and the shipped alternative otherwise)."""
    if is_shipped(value):
        manifest = verify(FOLDER)
        note = " (a PLACEHOLDER, not a trained segmenter)" if manifest.get("placeholder") else ""
        log.info("the shipped twin segmenter, version %s%s: %s", manifest.get("version", "?"), note, FOLDER)
        return FOLDER
    path = Path(value)
    if not (path / CONFIG_NAME).is_file():
        raise FileNotFoundError(
            f"--model.init_from={value}: no segmenter there ({path / CONFIG_NAME} does not exist; a so101-seg-train "
            f"run writes one to <output_dir>/best). --model.init_from={SHIPPED} starts from the twin segmenter that "
            f"ships with so101_segmenter, with no render or training first"
        )
    return path


def write_artifact(best: Path, out: Path, manifest: dict, card: str) -> Path:
    """A shipped segmenter folder at `out`: `best`'s config.json and model.safetensors, the manifest, the card and
    SHA256SUMS over all four, swapped in whole (atomic_folder), so a reader never sees a half-written one."""
    best = Path(best)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (best / name).is_file():
            raise FileNotFoundError(f"{best / name} does not exist: expected a so101-seg-train best/ folder")
    with atomic_folder(Path(out)) as staging:
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            shutil.copyfile(best / name, staging / name)
        write_text(staging / MANIFEST, json.dumps(manifest, indent=2) + "\n")
        write_text(staging / CARD, card)
        names = (CONFIG_NAME, WEIGHTS_NAME, MANIFEST, CARD)
        write_text(staging / CHECKSUMS, "".join(f"{sha256(staging / name)}  {name}\n" for name in names))
    return Path(out)
