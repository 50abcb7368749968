"""benchmarks/loader_vs_update.py on a tiny twin recording with tiny models: lerobot-train's DataLoader and update
built from a recipe's flags or its config file, and a table whose ratio is the two rates' quotient. Correctness,
not speed."""

import re
import sys
from pathlib import Path

import pytest
from clitools import run_cli

from so101_devtools.tiny_models import tiny_smolvlm_dir
from so101_devtools.tiny_policies import TINY_SEGDEPTH

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "loader_vs_update.py"
SMALL = ["--batch_size=4", "--batches=3", "--repeats=2", "--warmup_batches=1", "--policy.device=cpu"]


def table(output: str) -> dict[str, float]:
    """{'loader': samples/s, 'update': samples/s, 'ratio': loader/update} from the printed table."""
    rows = {}
    for name in ("loader", "update", "ratio"):
        m = re.search(rf"^\| {name}[^|]*\| ([\d.]+) \|", output, re.M)
        assert m, f"no {name} row in:\n{output[-3000:]}"
        rows[name] = float(m.group(1))
    return rows


def check(output: str, recipe: str) -> None:
    rows = table(output)
    assert rows["loader"] > 0 and rows["update"] > 0
    assert rows["ratio"] == pytest.approx(rows["loader"] / rows["update"], rel=0.02, abs=0.01)
    assert f"### DataLoader against the update: {recipe}" in output
    assert "batch 4" in output and "median of 2 runs of 3 batches" in output


def run_script(gt_dataset: Path, recipe: list[str], workers: int) -> str:
    """benchmarks/loader_vs_update.py on the tiny recording with `recipe`'s flags and `workers` loader workers; its
    output."""
    data = ["--dataset.repo_id=local/twin_demo", f"--dataset.root={gt_dataset}", f"--num_workers={workers}"]
    return run_cli([sys.executable, str(SCRIPT), *recipe, *data, *SMALL], cwd=REPO).stdout


@pytest.mark.slow
def test_segdepth_from_flags_with_a_worker(gt_dataset, tmp_path):
    recipe = ["--policy.type=segdepth", *(f"--policy.{k}={v}" for k, v in TINY_SEGDEPTH.items())]
    output = run_script(gt_dataset, recipe, workers=1)  # lerobot-train's spawned, persistent worker
    check(output, "--policy.type=segdepth (segdepth)")
    assert "1 workers" in output


@pytest.mark.slow
def test_segvla_twin_recipe_from_its_config_file(gt_dataset, tmp_path):
    # the recipe's own file, its model shrunk; its output_dir (a run that may exist) is not touched
    recipe = [
        "--config_path=configs/segvla_twin.yaml",
        f"--policy.vlm_model_name={tiny_smolvlm_dir()}",
        "--policy.num_vlm_layers=2",
        "--policy.resize_imgs_with_padding=[32,32]",
        "--policy.chunk_size=4",
        "--policy.n_action_steps=4",
    ]
    output = run_script(gt_dataset, recipe, workers=0)
    check(output, "configs/segvla_twin.yaml (segvla)")
    assert "0 workers" in output


def test_a_dataset_is_required():
    proc = run_cli([sys.executable, str(SCRIPT), "--batches=2"], cwd=REPO, check=False, timeout=300)
    assert proc.returncode != 0 and "--dataset.repo_id is required" in proc.stdout + proc.stderr
