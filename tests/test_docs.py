"""Every command the README and docs/ show parses with its own parser (tests/docs_commands.py), and the check
catches the ways a shown command breaks: a renamed flag, a missing config file, a command that is gone."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import docs_commands
import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _run_check(pages: list[Path], out: Path) -> tuple[subprocess.CompletedProcess, list[dict]]:
    run = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "docs_commands.py"), *map(str, pages), f"--json={out}"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    return run, json.loads(out.read_text()) if out.exists() else []


def test_commands_are_read_as_a_shell_reads_them(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "text\n```bash\n# a comment\nMUJOCO_GL=egl lerobot-eval --policy.path=a \\\n  --env.type=so101_twin  # why\n"
        "\ntorchrun --nproc_per_node=2 -m lerobot_policy_hlrp.commands.train_trunk --config_path=c.yaml\n```\n"
        "```text\nlerobot-train --not-a-command\n```\n"
    )
    shown = docs_commands.shown_commands(page)
    assert [s.line for s in shown] == [4, 7]
    assert docs_commands.command_words(shown[0].text) == ["lerobot-eval", "--policy.path=a", "--env.type=so101_twin"]
    assert docs_commands.command_words(shown[1].text) == [
        "python",
        "-m",
        "lerobot_policy_hlrp.commands.train_trunk",
        "--config_path=c.yaml",
    ]
    assert docs_commands.command_words("accelerate launch --cpu --num_processes 2 hlrp-train-laq --x=1") == [
        "hlrp-train-laq",
        "--x=1",
    ]


def test_find_port_is_shown_bare_and_installed():
    """lerobot-find-port waits for a cable to be unplugged, so it is not run; it takes no flags to get wrong."""
    assert any(ep.name == "lerobot-find-port" for ep in importlib.metadata.entry_points(group="console_scripts"))
    for page in PAGES:
        for shown in docs_commands.shown_commands(page):
            words = docs_commands.command_words(shown.text)
            if words[0] == "lerobot-find-port":
                assert words == ["lerobot-find-port"], f"{shown.page}:{shown.line}"


def test_the_check_fails_a_broken_command(tmp_path):
    page = tmp_path / "broken.md"
    page.write_text(
        "```bash\n"
        "lerobot-train --policy.type=segdepth --dataset.repo_id=local/x --output_dir=outputs/x_run\n"
        "lerobot-eval --policy.path=outputs/x_run/checkpoints/last/pretrained_model --env.type=so101_twin\n"
        "lerobot-train --policy.type=segdepth --dataset.repo_id=local/x --policy.frame_stak=3\n"
        "segdepth-rl-train --config_path=configs/no_such_file.yaml\n"
        "so101-no-such-command --x=1\n"
        "lerobot-eval --policy.path=USER/mystery --env.type=so101_twin\n"
        "bash scripts/demo.sh --train.stepz=5\n"
        "```\n"
    )
    run, results = _run_check([page], tmp_path / "out.json")
    verdicts = [bool(r["error"]) for r in results]
    assert verdicts == [False, False, True, True, True, True, True], run.stdout + run.stderr[-3000:]
    assert run.returncode == 1
    assert "frame_stak" in results[2]["error"]
    assert "no_such_file" in results[3]["error"]
    assert "so101-no-such-command" in results[4]["error"]
    assert "stepz" in results[6]["error"]


@pytest.mark.slow
def test_every_shown_command_parses(tmp_path):
    run, results = _run_check(PAGES, tmp_path / "out.json")
    failed = [f"{r['page']}:{r['line']}: {r['command']}\n  {r['error']}" for r in results if r["error"]]
    assert run.returncode == 0 and not failed, "\n".join(failed) or run.stderr[-3000:]
    assert len(results) >= len(PAGES), "the pages show fewer commands than there are pages"
