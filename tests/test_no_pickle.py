"""Nothing the suite loads can run code: resume states are safetensors + JSON, DrQ-v2 snapshots load weights-only,
and each loader refuses a pickle that would run code (here: create a marker file) without running it."""

import json
import random
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from so101_run_infra.pickled import UntrustedPickleError
from so101_run_infra.resume_state import PickledStateError, load_state, refuse_pickled, save_state
from so101_run_infra.rng import capture_rng, restore_rng


class MarkerOnLoad:
    """Unpickling this creates `marker`: what a hostile checkpoint could do instead (os.system, ...)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def hostile_checkpoint(run: Path, name: str, marker: Path, folder: str = "checkpoints/000010") -> Path:
    """A run folder as an earlier release left it, `last` -> the numbered checkpoint, whose `name` would create
    `marker` when unpickled."""
    checkpoint = run / folder
    checkpoint.mkdir(parents=True)
    torch.save({"optimizer": MarkerOnLoad(marker), "step": 10}, checkpoint / name)
    if folder.startswith("checkpoints/"):
        (run / "checkpoints" / "last").symlink_to(checkpoint.name)
    return checkpoint / name


def test_the_crafted_pickle_does_create_the_marker_when_unpickled(tmp_path):
    """So the refusals below are meaningful: a full unpickle of the same payload runs its code."""
    marker = tmp_path / "ran"
    path = hostile_checkpoint(tmp_path / "run", "training_state.pt", marker)
    torch.load(path, weights_only=False)
    assert marker.exists()


# ----- each loader refuses it, and the marker is never created --------------------------------------------------
def test_convert_drqv2_refuses_a_snapshot_that_imports_code(tmp_path):
    from lerobot_policy_segdepth.commands.convert_drqv2 import ConvertDrQV2Config, convert

    marker = tmp_path / "ran"
    snapshot = tmp_path / "snapshot.pt"
    torch.save({"encoder": MarkerOnLoad(marker), "actor": {}}, snapshot)
    with pytest.raises(UntrustedPickleError, match=r"wants to import the global getattr.*--trust_pickle=true") as e:
        convert(ConvertDrQV2Config(snapshot_path=snapshot, output_dir=tmp_path / "out", frame_stack=3,
                                   id_encoding="scaled", camera="wrist", image_size=84,
                                   action_scale=[4.0] * 5 + [15.0], action_repeat=2))  # fmt: skip
    assert str(snapshot) in str(e.value)
    assert not marker.exists() and not (tmp_path / "out").exists()


class SystemCall:
    """A payload naming os.system, as a hostile snapshot would; never unpickled in full here."""

    def __reduce__(self):
        import os

        return os.system, ("true",)


def test_the_convert_command_names_the_global_it_refused_in_one_line(tmp_path, monkeypatch):
    """torch words a global from a module it never allows ("posix.system whose module posix is blocked") unlike one
    it does not know; the command's refusal names it either way, in one line, without torch's weights_only notes."""
    from lerobot_policy_segdepth.commands import convert_drqv2

    snapshot = tmp_path / "snapshot.pt"
    torch.save({"encoder": SystemCall(), "actor": {}}, snapshot)
    monkeypatch.setattr(sys, "argv", ["segdepth-convert-drqv2", f"--snapshot_path={snapshot}",
                                      f"--output_dir={tmp_path / 'out'}"])  # fmt: skip
    with pytest.raises(SystemExit) as e:
        convert_drqv2.main()
    said = str(e.value.code)
    assert said.startswith(f"error: {snapshot} was not loaded: it wants to import the global posix.system,"), said
    assert "\n" not in said and "Weights only load failed" not in said and "--trust_pickle=true" in said
    assert not (tmp_path / "out").exists()


def test_convert_drqv2_loads_pickled_modules_only_with_trust_pickle(tmp_path):
    """DrQ-v2's own snapshots pickle modules: refused by name, converted with --trust_pickle=true."""
    from test_segdepth import drqv2_reference

    from lerobot_policy_segdepth.commands.convert_drqv2 import ConvertDrQV2Config, convert

    encoder, actor = drqv2_reference(in_channels=6)
    snapshot = tmp_path / "snapshot.pt"
    torch.save({"agent": SimpleNamespace(encoder=encoder, actor=actor)}, snapshot)
    options = dict(snapshot_path=snapshot, output_dir=tmp_path / "out", frame_stack=3, id_encoding="scaled",
                   camera="wrist", image_size=84, action_scale=[4.0] * 6, action_repeat=2)  # fmt: skip
    with pytest.raises(UntrustedPickleError, match=r"the global types\.SimpleNamespace"):
        convert(ConvertDrQV2Config(**options))
    policy = convert(ConvertDrQV2Config(**options, trust_pickle=True))
    torch.testing.assert_close(policy.encoder.convnet[0].weight, encoder.convnet[0].weight)


def test_laq_resume_refuses_pickled_states(tmp_path):
    from lerobot_policy_hlrp.commands.train_laq import train

    marker = tmp_path / "ran"
    path = hostile_checkpoint(tmp_path / "run", "training_state.pt", marker)
    with pytest.raises(PickledStateError, match=r"checkpoints/last/training_state\.pt is a resume state"):
        train(SimpleNamespace(output_dir=tmp_path / "run", resume=True))
    # converted training state, but a rank's generators still pickled
    save_state(path.with_suffix(""), {"step": 10})
    torch.save(MarkerOnLoad(marker), path.parent / "rng_0.pt")
    with pytest.raises(PickledStateError, match=r"checkpoints/last/rng_0\.pt is a resume state"):
        train(SimpleNamespace(output_dir=tmp_path / "run", resume=True))
    assert not marker.exists()


def test_trunk_resume_refuses_a_pickled_state(tmp_path):
    from lerobot_policy_hlrp.commands.train_trunk import train

    marker = tmp_path / "ran"
    hostile_checkpoint(tmp_path / "run", "training_state.pt", marker)
    with pytest.raises(
        PickledStateError, match=r"python -m so101_run_infra.resume_state --state_path=.*training_state.pt"
    ):
        train(SimpleNamespace(output_dir=tmp_path / "run", resume=True))
    assert not marker.exists()


def test_segdepth_rl_resume_refuses_a_pickled_state(tmp_path):
    from so101_segdepth_rl.train import train

    marker = tmp_path / "ran"
    hostile_checkpoint(tmp_path / "run", "training_state.pt", marker, folder="checkpoints/0000000160")
    with pytest.raises(PickledStateError, match=r"checkpoints/last/training_state\.pt is a resume state"):
        train(SimpleNamespace(output_dir=tmp_path / "run", resume=True, torch_threads=0))
    assert not marker.exists()


def test_segmenter_refuses_a_pickled_state(tmp_path):
    from so101_segmenter.train import train

    marker = tmp_path / "ran"
    hostile_checkpoint(tmp_path / "run", "train_state.pt", marker, folder="last")
    with pytest.raises(PickledStateError, match=r"last/train_state\.pt is a resume state"):
        train(SimpleNamespace(output_dir=tmp_path / "run"))
    assert not marker.exists()


# ----- the one-time conversion ------------------------------------------------------------------------------------
def convert_command(path: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "so101_run_infra.resume_state", f"--state_path={path}", *flags],
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_conversion_needs_trust_pickle_then_writes_the_folder_the_trainers_read(tmp_path):
    marker = tmp_path / "ran"
    hostile = hostile_checkpoint(tmp_path / "hostile", "training_state.pt", marker)
    refused = convert_command(hostile)
    assert refused.returncode != 0 and "--trust_pickle=true" in refused.stderr
    assert not marker.exists() and not hostile.with_suffix("").exists()

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    legacy = {"optimizer": optimizer.state_dict(), "step": 7, "rng": capture_rng()}
    old = tmp_path / "run" / "checkpoints" / "000007" / "training_state.pt"
    old.parent.mkdir(parents=True)
    torch.save(legacy, old)
    with pytest.raises(PickledStateError):
        refuse_pickled(old.parent, "training_state.pt")
    done = convert_command(old, "--trust_pickle=true")
    assert done.returncode == 0, done.stderr
    refuse_pickled(old.parent, "training_state.pt")  # converted: the folder beside it is read instead
    state = load_state(old.with_suffix(""))
    assert state["step"] == 7 and old.is_file()
    torch.testing.assert_close(state["optimizer"]["state"][0]["exp_avg"], legacy["optimizer"]["state"][0]["exp_avg"])
    assert state["rng"]["python"] == legacy["rng"]["python"]


# ----- the format ---------------------------------------------------------------------------------------------------
def draws(loader: torch.Generator, demos: np.random.Generator) -> list[float]:
    """One number from every stream, Gaussian ones included (python and numpy cache half of each pair)."""
    return [random.random(), random.gauss(0, 1), float(np.random.rand()), float(np.random.standard_normal()),
            float(torch.rand(1)), float(torch.rand(1, generator=loader)), float(demos.random())]  # fmt: skip


def test_rng_states_round_trip_exactly(tmp_path):
    loader, demos = torch.Generator().manual_seed(3), np.random.default_rng(4)
    random.gauss(0, 1), np.random.standard_normal()  # leave a cached Gaussian in both
    save_state(tmp_path / "rng", capture_rng({"loader": loader, "demos": demos}))
    expected = draws(loader, demos)
    draws(loader, demos)
    restore_rng(load_state(tmp_path / "rng"), {"loader": loader, "demos": demos})
    assert draws(loader, demos) == expected


def test_any_nested_state_round_trips_with_its_types(tmp_path):
    state = {
        "step": 3, "wall_s": 0.1 + 0.2, "none": None, "flags": [True, False], "inf": -float("inf"),
        "pair": (1, "a"), 2: np.int64(5), "by_id": {0: torch.arange(3), "0": torch.ones(2, dtype=torch.bfloat16)},
        "array": np.arange(6, dtype=np.uint32).reshape(2, 3), "scalar": np.float64(1 / 3), "__tensor__": "plain",
    }  # fmt: skip
    back = load_state(save_state(tmp_path / "s", state))
    assert set(back) == set(state) and back["pair"] == (1, "a") and back["wall_s"] == 0.1 + 0.2
    assert type(back[2]) is np.int64 and type(back["scalar"]) is np.float64 and back["scalar"] == 1 / 3
    assert back["array"].dtype == np.uint32 and (back["array"] == state["array"]).all()
    assert back["by_id"][0].equal(torch.arange(3)) and back["by_id"]["0"].dtype == torch.bfloat16
    assert back["__tensor__"] == "plain" and back["inf"] == -float("inf")
    files = {p.name for p in (tmp_path / "s").iterdir()}
    assert files == {"state.json", "tensors.safetensors"}
    json.loads((tmp_path / "s" / "state.json").read_text())  # plain JSON: nothing in it is executed
    with pytest.raises(TypeError, match="path is a PosixPath"):
        save_state(tmp_path / "bad", {"path": tmp_path})
    assert not (tmp_path / "bad").exists()


def steps(model: torch.nn.Module, optimizer, scheduler, n: int, seed: int) -> None:
    data = torch.Generator().manual_seed(seed)
    for _ in range(n):
        loss = model(torch.randn(8, 4, generator=data)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()


def make_run():
    from transformers import get_scheduler

    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    kwargs = {"min_lr_rate": 0.1}
    scheduler = get_scheduler("cosine_with_min_lr", optimizer, 2, 10, scheduler_specific_kwargs=kwargs)
    return model, optimizer, scheduler


def test_optimizer_and_scheduler_resume_to_the_same_weights(tmp_path):
    torch.manual_seed(0)
    straight = make_run()
    steps(*straight, 4, seed=1)
    save_state(tmp_path / "state", {"optimizer": straight[1].state_dict(), "scheduler": straight[2].state_dict()})
    weights = {k: v.clone() for k, v in straight[0].state_dict().items()}
    steps(*straight, 4, seed=2)

    resumed = make_run()
    resumed[0].load_state_dict(weights)
    state = load_state(tmp_path / "state")
    resumed[1].load_state_dict(state["optimizer"])
    resumed[2].load_state_dict(state["scheduler"])
    steps(*resumed, 4, seed=2)
    for key, value in straight[0].state_dict().items():
        torch.testing.assert_close(resumed[0].state_dict()[key], value, rtol=0, atol=0, msg=key)
    # the optimizer sits in lerobot-train's layout
    assert {p.name for p in (tmp_path / "state" / "optimizer").iterdir()} == {
        "optimizer_state.safetensors",
        "optimizer_param_groups.json",
    }
