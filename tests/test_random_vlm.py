"""`so101-make-random-vlm` run again: over its own folder of the same size and seed it does nothing; another size or
seed, or a folder it did not write, is refused in one line; a run killed while writing leaves nothing, and the same
command then makes the folder whole, equal to an uninterrupted one."""

import sys
from pathlib import Path
from unittest.mock import patch

import pytest
from clitools import run_cli
from run_again import mtimes

from so101_commands import random_vlm
from so101_run_infra.cli import OutputRefused


def make(out: Path, *flags: str) -> None:
    with patch.object(sys, "argv", ["so101-make-random-vlm", "--size=tiny", f"--output_dir={out}", *flags]):
        random_vlm.make_random_vlm()


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_run_again_finished_killed_and_over_other_settings(tmp_path, capsys):
    out = tmp_path / "vlm"
    make(out)
    before = mtimes(out)
    make(out)
    said = capsys.readouterr().out.strip().splitlines()[-1]
    assert said == f"{out}: already made with these settings (size tiny, seed 0); nothing to do"
    assert mtimes(out) == before
    with pytest.raises(OutputRefused, match=r"made with other settings \(seed: saved 0, now 1\): choose another"):
        make(out, "--seed=1")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    with pytest.raises(OutputRefused, match="holds nothing so101-make-random-vlm wrote"):
        make(tmp_path / "mine")

    def killed(folder):
        (Path(folder) / "config.json").write_text("{}")
        raise KeyboardInterrupt

    with patch.dict(random_vlm.SIZES, {"tiny": killed}), pytest.raises(KeyboardInterrupt):
        make(tmp_path / "killed")
    assert not (tmp_path / "killed").exists() and not list(tmp_path.glob(".killed*"))
    make(tmp_path / "killed")
    assert files(tmp_path / "killed") == files(out)


@pytest.mark.slow
def test_the_command_refuses_in_one_line(tmp_path):
    out = tmp_path / "vlm"
    make(out)
    refused = run_cli(["so101-make-random-vlm", "--size=twin", f"--output_dir={out}"], cwd=tmp_path, check=False)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr, refused.stderr[-3000:]
    assert f"{out} holds a SmolVLM made with other settings (size: saved 'tiny', now 'twin')" in refused.stderr
