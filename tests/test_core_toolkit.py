"""so101_run_infra (atomic writes, run folders, RNG state) and the trainers' use of it: their learning-rate
schedules against the hand-written formulas they replaced, the RL trainer's log cadence, and two source scans (no
renames outside the toolkit, no function over 100 lines)."""

import ast
import json
import math
import random
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from so101_run_infra import atomic
from so101_run_infra.atomic import atomic_folder, replace_folder, torch_save, write_bytes, write_json, write_text
from so101_run_infra.cli import OutputRefused
from so101_run_infra.rng import capture_rng, restore_rng
from so101_run_infra.runs import (
    RUN_FINISHED,
    check_resume_config,
    claim_run_dir,
    claim_training_dir,
    config_differences,
    finished_run,
    mark_finished,
    refuse_used_folder,
    with_defaults,
    without_fields,
)

REPO = Path(__file__).resolve().parent.parent
SOURCE_FOLDERS = [
    p for p in REPO.iterdir() if p.is_dir() and p.name not in ("tests", "benchmarks", "docs", "configs", "outputs")
]


def source_files() -> list[Path]:
    return sorted(
        f
        for folder in SOURCE_FOLDERS
        if not folder.name.startswith(".")
        for f in folder.rglob("*.py")
        if not any(part.startswith(".") or part == "build" for part in f.relative_to(REPO).parts)
    )


# ----- atomic writes --------------------------------------------------------------------------------------------
def test_atomic_file_writes_round_trip(tmp_path):
    write_bytes(tmp_path / "a.bin", b"\x00\x01")
    write_text(tmp_path / "sub" / "b.txt", "hello")  # the folder is made
    write_json(tmp_path / "c.json", {"x": [1, 2]})
    torch_save({"t": torch.arange(3)}, tmp_path / "d.pt")
    atomic.save_safetensors({"w": torch.ones(2)}, tmp_path / "e.safetensors", metadata={"k": "v"})
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "sub" / "b.txt").read_text() == "hello"
    assert json.loads((tmp_path / "c.json").read_text()) == {"x": [1, 2]}
    assert torch.equal(torch.load(tmp_path / "d.pt")["t"], torch.arange(3))
    from safetensors import safe_open

    with safe_open(str(tmp_path / "e.safetensors"), "pt") as f:
        assert f.metadata() == {"k": "v"} and torch.equal(f.get_tensor("w"), torch.ones(2))
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.bin", "b.txt", "c.json", "d.pt", "e.safetensors", "sub"]


def test_atomic_files_get_the_mode_a_plain_write_gives(tmp_path):
    # mkstemp's 0600 must not survive the rename: checkpoints on a shared machine are read by other users
    import os

    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        torch_save({"x": torch.zeros(1)}, tmp_path / "b.pt")
        with open(tmp_path / "plain", "w") as f:
            f.write("x")
    finally:
        os.umask(old)
    assert (tmp_path / "plain").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.pt").stat().st_mode & 0o777 == 0o644


def test_a_crash_in_the_middle_of_a_file_write_leaves_the_old_file(tmp_path):
    target = tmp_path / "state.pt"
    torch_save({"step": 1}, target)

    def half_then_crash(tmp: Path) -> None:
        tmp.write_bytes(b"half a checkpoint")
        raise KeyboardInterrupt  # a job killed mid-write

    with pytest.raises(KeyboardInterrupt):
        atomic.write_with(target, half_then_crash)
    assert torch.load(target) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.pt"]  # and no temp file left behind


def test_the_temp_file_keeps_the_suffix_for_writers_that_infer_the_format(tmp_path):
    seen = []
    atomic.write_with(tmp_path / "curve.png", lambda tmp: seen.append(tmp) or tmp.write_bytes(b"png"))
    assert seen[0].suffix == ".png" and seen[0].parent == tmp_path and seen[0].name.startswith(".curve.png.")


def test_a_folder_is_swapped_whole_and_a_crash_leaves_the_old_one(tmp_path):
    folder = tmp_path / "checkpoint"
    with atomic_folder(folder) as staging:
        (staging / "weights").write_text("v1")
    with pytest.raises(RuntimeError), atomic_folder(folder) as staging:
        (staging / "weights").write_text("half of v2")
        raise RuntimeError("killed")
    assert (folder / "weights").read_text() == "v1"
    with atomic_folder(folder) as staging:  # an existing folder: moved aside, swapped, then deleted
        (staging / "weights").write_text("v2")
    assert (folder / "weights").read_text() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


def test_replace_folder_cleans_up_after_a_crash_between_its_renames(tmp_path):
    folder, staging = tmp_path / "data", tmp_path / ".data.tmp"
    folder.mkdir()
    (folder / "old").touch()
    (tmp_path / ".data.old").mkdir()  # what a swap killed after moving the old folder aside would leave
    staging.mkdir()
    (staging / "new").touch()
    replace_folder(staging, folder)
    assert [p.name for p in folder.iterdir()] == ["new"] and sorted(p.name for p in tmp_path.iterdir()) == ["data"]


# ----- run folders and resume checks ----------------------------------------------------------------------------
def test_the_resume_check_names_every_differing_field_with_both_values(tmp_path):
    saved = {"policy": {"lr": 0.0003, "dim": 64}, "seed": 1, "gone": True, "steps": [{"size": 32}, {"k": 1}]}
    now = {"policy": {"lr": 0.001, "dim": 64}, "seed": 1, "new": [1], "steps": [{"size": 24}, {"k": 1}]}
    assert config_differences(saved, now) == [
        "gone: saved True, now (absent)",
        "new: saved (absent), now [1]",
        "policy.lr: saved 0.0003, now 0.001",
        "steps[0].size: saved 32, now 24",
    ]
    assert config_differences({"cams": ["a"]}, {"cams": ["a", "b"]}) == ["cams: saved ['a'], now ['a', 'b']"]
    with pytest.raises(ValueError) as err:
        check_resume_config(saved, now, tmp_path)
    message = str(err.value)
    assert message.startswith(f"--resume=true with a config that differs from the run in {tmp_path}: ")
    assert "policy.lr: saved 0.0003, now 0.001" in message and "policy.dim" not in message
    check_resume_config(saved, dict(saved), tmp_path)  # the same config passes


def test_claiming_a_run_folder(tmp_path):
    out = tmp_path / "run"
    assert claim_run_dir(out, resume=False, checkpoint=out / "last").is_dir()  # new: made
    claim_run_dir(out, resume=False, checkpoint=out / "last")  # empty: still usable
    (out / "log.txt").touch()
    with pytest.raises(FileExistsError, match=r"run is not empty: pass --resume=true"):
        claim_run_dir(out, resume=False, checkpoint=out / "last")
    with pytest.raises(FileNotFoundError, match="last does not exist: nothing to resume"):
        claim_run_dir(out, resume=True, checkpoint=out / "last")
    (out / "last").mkdir()
    claim_run_dir(out, resume=True, checkpoint=out / "last")


def test_claiming_a_training_folder_checks_the_shape_on_resume_and_the_holder_when_new(tmp_path):
    """The trainers' one claim: a resume must keep the saved shape (named in the refusal); a new run into a used
    folder is refused, saying whether --resume=true would continue it."""
    out, last = tmp_path / "run", tmp_path / "run" / "last"
    shape = {"model": {"width": 8}}
    claim = dict(shape_now=shape, now={"steps": 5}, settings={"steps": 5})
    assert claim_training_dir(out, False, last, "trainer", shape_saved=None, saved=None, **claim).is_dir()
    last.mkdir()
    with pytest.raises(ValueError, match=r"--resume=true with a model that differs .*model.width: saved 4, now 8"):
        claim_training_dir(out, True, last, "trainer", shape_saved={"model": {"width": 4}}, saved={}, what="model",
                           **claim)  # fmt: skip
    claim_training_dir(out, True, last, "trainer", shape_saved=shape, saved={"steps": 3}, **claim)
    with pytest.raises(FileExistsError, match="--resume=true"):
        claim_training_dir(out, False, last, "trainer", shape_saved=shape, saved={"steps": 3}, **claim)


def test_a_finished_run_is_known_again_and_a_used_folder_is_refused_naming_what_it_holds(tmp_path, capsys):
    out, settings = tmp_path / "run", {"lr": 0.001, "steps": 20}
    last = out / "checkpoints" / "last"
    assert finished_run(out, settings) is None
    last.mkdir(parents=True)
    mark_finished(out, settings, "20 steps", step=20)
    assert finished_run(out, {**settings, "steps": 30}) is None and capsys.readouterr().out == ""
    assert finished_run(out, settings)["result"] == {"step": 20}
    assert capsys.readouterr().out == f"{out}: already trained with these settings (20 steps); nothing to do\n"

    def refused(**kwargs) -> str:
        with pytest.raises(OutputRefused) as err:
            refuse_used_folder(out, last, "a-trainer", **{"saved": settings, "now": settings, "settings": settings,
                                                          "resumable": True, **kwargs})  # fmt: skip
        return str(err.value)

    # finished with other settings: its RUN_FINISHED settings are the ones compared
    message = refused(settings={**settings, "steps": 30})
    assert message == (
        f"{out} holds a run made with other settings (steps: saved 20, now 30): pass --resume=true to continue it, "
        "or choose another --output_dir to start a new run"
    )
    claim_run_dir(out, resume=True, checkpoint=last)  # resumed: no longer finished
    assert not (out / RUN_FINISHED).exists()
    assert "holds an unfinished run of these settings: pass --resume=true" in refused()
    message = refused(now={**settings, "lr": 0.01}, resumable=False)
    assert message.endswith(
        "(lr: saved 0.001, now 0.01): choose another --output_dir, or remove that folder to start over"
    )
    assert refused(saved=None) == f"{out} is not empty and holds no a-trainer run: choose another --output_dir"
    last.rmdir()
    assert "stopped before its first checkpoint: remove that folder to start over" in refused()
    refuse_used_folder(
        tmp_path / "new", last, "a-trainer", saved=None, now=settings, settings=settings, resumable=False
    )

    config = {"output_dir": "x", "model": {"repo_id": "me/m", "dim": 8}, "lr": (1, 2)}
    assert without_fields(config, ["output_dir", "model.repo_id", "absent.field"]) == {
        "model": {"dim": 8},
        "lr": [1, 2],
    }
    assert with_defaults({"model": {"dim": 8}}, {"model": {"dim": 4, "new": 1}, "lr": 3}) == {
        "model": {"dim": 8, "new": 1}, "lr": 3
    }  # fmt: skip


# ----- RNG state ------------------------------------------------------------------------------------------------
def draws(loader_gen: torch.Generator, demo_gen: np.random.Generator) -> list:
    return [
        random.random(),
        float(np.random.rand()),
        float(torch.rand(1)),
        float(torch.rand(1, generator=loader_gen)),
        float(demo_gen.random()),
    ]


def test_rng_capture_and_restore_covers_every_generator(tmp_path):
    loader_gen, demo_gen = torch.Generator().manual_seed(3), np.random.default_rng(4)
    generators = {"loader": loader_gen, "demos": demo_gen}
    draws(loader_gen, demo_gen)
    torch.save(capture_rng(generators), tmp_path / "rng.pt")  # saved with a checkpoint
    expected = draws(loader_gen, demo_gen)
    draws(loader_gen, demo_gen)  # the run goes on, then dies
    restore_rng(torch.load(tmp_path / "rng.pt", weights_only=False), generators)
    assert draws(loader_gen, demo_gen) == expected


def test_restoring_needs_every_named_generator_and_refuses_other_objects():
    state = capture_rng({"loader": torch.Generator()})
    with pytest.raises(KeyError, match="no generator 'demos'"):
        restore_rng(state, {"demos": np.random.default_rng()})
    with pytest.raises(TypeError, match="'bad' is a int"):
        capture_rng({"bad": 3})


def test_restoring_a_state_written_before_the_toolkit():
    """HLRP's stage-1 rng_<rank>.pt files held the same four keys; a missing stream is left alone."""
    legacy = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    expected = draws(torch.Generator(), np.random.default_rng(0))[:3]
    restore_rng(legacy)
    assert draws(torch.Generator(), np.random.default_rng(0))[:3] == expected


# ----- the trainers' schedules, against the formulas they replaced ---------------------------------------------
def optimizer(lr: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def lrs(scheduler, steps: int) -> list[float]:
    out = []
    for _ in range(steps):
        out.append(scheduler.get_last_lr()[0])
        scheduler.optimizer.step()
        scheduler.step()
    return out


def test_the_segmenter_schedule_is_the_closed_form_cosine_and_restarts_from_the_epoch():
    from so101_segmenter.train import epoch_scheduler

    def old(epoch: int, epochs: int, lr: float, min_lr: float) -> float:  # the hand-written cosine_lr it replaced
        return min_lr + (lr - min_lr) * (1 + math.cos(math.pi * epoch / max(epochs, 1))) / 2

    cfg = SimpleNamespace(epochs=10, optim=SimpleNamespace(lr=3e-3, min_lr=1e-6))  # what the schedule reads
    assert lrs(epoch_scheduler(optimizer(3e-3), cfg, 0), 10) == pytest.approx(
        [old(e, 10, 3e-3, 1e-6) for e in range(10)]
    )
    # a run resumed at epoch 4 (its optimizer's lr left wherever it was) continues the same curve
    resumed = optimizer(1.0)
    assert lrs(epoch_scheduler(resumed, cfg, 4), 6) == pytest.approx([old(e, 10, 3e-3, 1e-6) for e in range(4, 10)])


def test_the_trunk_schedule_is_the_linear_warmup_it_replaced():
    from lerobot_policy_hlrp.commands.train_trunk import TrunkTrainConfig, make_scheduler

    cfg = TrunkTrainConfig(mode="actions", steps=50, warmup_steps=10, lr=1e-4)
    expected = [1e-4 * min(1.0, (s + 1) / max(1, cfg.warmup_steps)) for s in range(50)]
    assert lrs(make_scheduler(cfg, optimizer(cfg.lr)), 50) == pytest.approx(expected, rel=1e-12)


def test_the_laq_schedule_warms_up_as_before_and_decays_one_step_earlier():
    from lerobot_policy_hlrp.commands.train_laq import make_scheduler
    from lerobot_policy_hlrp.pretrain.laq_config import LAQTrainConfig

    cfg = LAQTrainConfig(steps=60, warmup_steps=10, lr=1e-3, min_lr_ratio=0.1)

    def old(step: int) -> float:  # the hand-written lr_lambda it replaced
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    new = lrs(make_scheduler(cfg, optimizer(cfg.lr)), cfg.steps)
    assert new[:10] == pytest.approx([cfg.lr * old(s) for s in range(10)], rel=1e-12)
    # transformers counts the decay from the step after the warm-up: step s has the old schedule's lr of s + 1
    assert new[10:] == pytest.approx([cfg.lr * old(s + 1) for s in range(10, cfg.steps)], rel=1e-12)
    assert new[-1] == pytest.approx(cfg.lr * cfg.min_lr_ratio)


# ----- the RL trainer's log cadence -----------------------------------------------------------------------------
def test_logs_fall_on_multiples_of_the_cadence_from_any_start():
    from so101_segdepth_rl.train import next_multiple

    assert [next_multiple(f, 1000) for f in (0, 900, 999, 1000, 2900)] == [1000, 1000, 1000, 2000, 3000]


# ----- source scans ---------------------------------------------------------------------------------------------
RENAMES = {"replace", "rename"}
TOOLKIT = REPO / "so101_run_infra" / "src" / "so101_run_infra" / "atomic.py"


def renames_in(path: Path) -> list[str]:
    """Calls of os.replace / os.rename / <path>.replace(a Path) / <path>.rename in a module."""
    label = path.relative_to(REPO) if path.is_relative_to(REPO) else path.name
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in RENAMES):
            continue
        owner = node.func.value
        if isinstance(owner, ast.Name) and owner.id == "os":
            found.append(f"{label}:{node.lineno} os.{node.func.attr}")
        # str.replace takes two arguments and dataclasses.replace keywords: one positional argument is a Path's
        elif (node.func.attr == "rename" or (len(node.args) == 1 and not node.keywords)) and not (
            isinstance(owner, ast.Name) and owner.id == "dataclasses"
        ):
            found.append(f"{label}:{node.lineno} .{node.func.attr}()")
    return found


def test_the_scan_finds_every_kind_of_rename(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("os.replace(a, b)\nos.rename(a, b)\np.rename(q)\np.replace(q)\ns.replace('a', 'b')\n")
    assert [f.split(" ")[1] for f in renames_in(sample)] == ["os.replace", "os.rename", ".rename()", ".replace()"]


def test_only_the_toolkit_renames_files():
    found = [hit for f in source_files() if f != TOOLKIT for hit in renames_in(f)]
    assert not found, "rename through so101_run_infra.atomic instead:\n" + "\n".join(found)


def long_functions(path: Path, limit: int = 100) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    return [
        f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno + 1 > limit
    ]


def test_no_function_is_over_100_lines():
    found = [hit for f in source_files() for hit in long_functions(f)]
    assert not found, "split these (collect / update / evaluate / save, each readable on one screen):\n" + "\n".join(
        found
    )


def test_save_policy_writes_the_policy_then_each_pipeline_into_the_folder(tmp_path):
    from so101_run_infra.checkpoints import save_policy

    class Part:
        def __init__(self, name):
            self.name = name

        def save_pretrained(self, folder):
            (folder / f"{self.name}.json").write_text(self.name)
            order.append(self.name)

    order = []
    folder = save_policy(tmp_path / "new" / "pretrained_model", Part("policy"), Part("pre"), Part("post"))
    assert order == ["policy", "pre", "post"]
    assert sorted(p.name for p in folder.iterdir()) == ["policy.json", "post.json", "pre.json"]
