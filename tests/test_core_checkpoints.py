"""so101_run_infra.checkpoints: the atomic publish shared by the DrQ-v2 and HLRP trainers."""

from pathlib import Path

import pytest

from so101_run_infra.checkpoints import publish_checkpoint


def write(root: Path, step: int) -> tuple[Path, Path]:
    tmp = root / f".tmp-{step:06d}"
    tmp.mkdir(parents=True)
    (tmp / "state.txt").write_text(str(step))
    return tmp, root / f"{step:06d}"


def names(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


def test_publish_keeps_the_newest_and_every_linked_checkpoint(tmp_path):
    root = tmp_path / "checkpoints"
    publish_checkpoint(*write(root, 10), keep=2, links=("last", "best"))
    publish_checkpoint(*write(root, 20), keep=2)
    publish_checkpoint(*write(root, 30), keep=2)
    # 10 is older than the newest two but `best` points at it; nothing else older survives
    assert names(root) == ["000010", "000020", "000030", "best", "last"]
    publish_checkpoint(*write(root, 40), keep=2, links=("last", "best"))
    assert names(root) == ["000030", "000040", "best", "last"]
    assert (root / "best").resolve().name == (root / "last").resolve().name == "000040"
    assert (root / "last" / "state.txt").read_text() == "40"
    assert not list(root.glob(".*"))  # no temporary folder or link left behind


def test_an_unfinished_save_leaves_the_previous_checkpoint_and_links(tmp_path):
    root = tmp_path / "checkpoints"
    publish_checkpoint(*write(root, 10), links=("last", "best"))
    write(root, 20)  # killed before the rename: only the temporary folder exists
    assert (root / "last").resolve().name == (root / "best").resolve().name == "000010"
    assert (root / "last" / "state.txt").read_text() == "10"
    publish_checkpoint(root / ".tmp-000020", root / "000020")  # finishing it moves `last` only
    assert (root / "last").resolve().name == "000020" and (root / "best").resolve().name == "000010"


def test_keep_must_include_the_new_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="keep=0"):
        publish_checkpoint(*write(tmp_path, 1), keep=0)
