"""`segvla-pretrain-tower`: a SmolVLM folder's vision tower pretrained on the twin's segmentation.

The frames reach the tower as SmolVLA's preprocessing gives them (checked against LeRobot's own resize_with_pad, and
the masks against the image they label); the written folder loads as a SmolVLM with only the tower's weights
changed; an interrupted run resumes to the weights an uninterrupted one reaches; run again over its own output it
does nothing, and refuses a run of other settings or a folder it did not write; bad input is refused by name."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from lerobot.policies.common.vla_utils import resize_with_pad
from run_again import mtimes, nothing_to_do
from safetensors.torch import load_file

from lerobot_policy_segvla.commands import pretrain_tower
from so101_run_infra.cli import OutputRefused
from so101_segmenter.classes import UNLABELED


def test_the_tower_sees_frames_and_masks_as_the_policy_pads_them():
    # a 6x8 frame of 2x2 blocks, its mask the block index: to a 4x4 input, halved to 3x4, one padded row on top
    blocks = torch.arange(12).reshape(3, 4).repeat_interleave(2, 0).repeat_interleave(2, 1)  # (6, 8)
    images = (blocks / 11.0).expand(1, 3, 6, 8).contiguous()
    pixels, labels = pretrain_tower.policy_view(images, blocks[None] % 6, 4)
    torch.testing.assert_close(pixels, resize_with_pad(images, 4, 4, pad_value=0) * 2 - 1)
    assert pixels.shape == (1, 3, 4, 4) and labels.shape == (1, 4, 4)
    assert (labels[0, 0] == UNLABELED).all() and (pixels[0, :, 0] == -1).all()  # the padding: ignored, black
    # each block lands where its pixels land: block (r, c) at (r + 1, c)
    expected = torch.arange(12).reshape(3, 4) % 6
    assert torch.equal(labels[0, 1:], expected)
    torch.testing.assert_close(((pixels[0, 0, 1:] + 1) / 2 * 11).round(), torch.arange(12.0).reshape(3, 4))


@pytest.fixture(scope="module")
def tiny_inputs(tmp_path_factory):
    from so101_commands.random_vlm import save_smolvlm
    from so101_twin_data.sim_frames import render_dataset

    root = tmp_path_factory.mktemp("tower")
    vlm = save_smolvlm(root / "vlm", weights=True)  # tiny: 32x32 input, 8x8 patches
    render_dataset(root / "frames", episodes=2, frames_per_episode=2, height=24, width=32, seed=3)
    return vlm, root / "frames"


def config(vlm, frames, out, **kw) -> pretrain_tower.TowerPretrainConfig:
    data = pretrain_tower.TowerDataConfig(path=frames, img_height=24, img_width=32)
    return pretrain_tower.TowerPretrainConfig(
        vlm_path=vlm, data=data, test_paths=[frames], batch_size=2, num_workers=0, threads=1, output_dir=out, **kw
    )


def test_the_folder_written_is_the_smolvlm_with_only_its_tower_trained(tiny_inputs, tmp_path):
    from transformers import AutoModelForImageTextToText

    vlm, frames = tiny_inputs
    record = pretrain_tower.pretrain(config(vlm, frames, tmp_path / "out", epochs=2))
    before, after = load_file(vlm / "model.safetensors"), load_file(tmp_path / "out" / "model.safetensors")
    assert before.keys() == after.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("vision_model" in k for k in changed), sorted(changed)[:5]
    assert AutoModelForImageTextToText.from_pretrained(tmp_path / "out") is not None
    assert (tmp_path / "out" / "tokenizer.json").is_file()
    metrics = json.loads((tmp_path / "out" / pretrain_tower.METRICS).read_text())
    assert metrics == json.loads(json.dumps(record)) and record["frames"] == 8 and record["image_size"] == 32
    assert 0.0 <= record["test"]["frames"]["miou"] <= 1.0
    assert not (tmp_path / ("out" + pretrain_tower.STATE)).exists()  # the resume state goes once the folder is written


def stopping_after(save):
    """`save`, then a kill: the run dies just after its first epoch's state is on disk."""

    def save_then_stop(folder, state):
        save(folder, state)
        raise KeyboardInterrupt

    return save_then_stop


def test_an_interrupted_run_resumes_to_the_uninterrupted_weights(tiny_inputs, tmp_path, monkeypatch):
    vlm, frames = tiny_inputs
    pretrain_tower.pretrain(config(vlm, frames, tmp_path / "whole", epochs=2))

    real_save = pretrain_tower.save_state
    monkeypatch.setattr(pretrain_tower, "save_state", stopping_after(real_save))
    with pytest.raises(KeyboardInterrupt):
        pretrain_tower.pretrain(config(vlm, frames, tmp_path / "parts", epochs=2))
    assert not (tmp_path / "parts").exists()
    monkeypatch.setattr(pretrain_tower, "save_state", real_save)
    pretrain_tower.pretrain(config(vlm, frames, tmp_path / "parts", epochs=2))
    whole = load_file(tmp_path / "whole" / "model.safetensors")
    parts = load_file(tmp_path / "parts" / "model.safetensors")
    for key in whole:
        torch.testing.assert_close(parts[key], whole[key], rtol=0, atol=0, msg=key)


def test_pretrain_started_again_does_nothing_resumes_or_refuses(tiny_inputs, tmp_path, monkeypatch, capsys, caplog):
    """The command over its own output: a killed run resumes only with its own settings, a finished one is left
    alone (one line on stdout), one of other settings or a folder of other files is refused before any training."""
    vlm, frames = tiny_inputs

    def command(out, *flags: str) -> None:
        monkeypatch.setattr(sys, "argv", [
            "segvla-pretrain-tower", f"--vlm_path={vlm}", f"--data.path={frames}", "--data.img_height=24",
            "--data.img_width=32", f"--test_paths=[{frames}]", "--batch_size=2", "--num_workers=0", "--threads=1",
            "--epochs=2", f"--output_dir={out}", *flags,
        ])  # fmt: skip
        pretrain_tower.main()

    out, state = tmp_path / "tower", tmp_path / ("tower" + pretrain_tower.STATE)
    real_save = pretrain_tower.save_state
    monkeypatch.setattr(pretrain_tower, "save_state", stopping_after(real_save))
    with pytest.raises(KeyboardInterrupt):
        command(out)
    monkeypatch.setattr(pretrain_tower, "save_state", real_save)
    killed = mtimes(state)
    with pytest.raises(OutputRefused, match=rf"{state} holds an unfinished run of other settings \(lr: saved 0\.0005, "
                       r"now 0\.001\): choose another --output_dir, or remove that folder"):  # fmt: skip
        command(out, "--lr=1e-3")
    assert mtimes(state) == killed and not out.exists()
    capsys.readouterr()
    with caplog.at_level("INFO", logger=pretrain_tower.__name__):
        command(out, "--num_workers=1")  # how fast it runs is no setting
    assert "resuming after epoch 1 of 2" in caplog.text
    capsys.readouterr()
    assert (out / "run_finished.json").is_file() and not state.exists()

    finished = mtimes(out)
    command(out)
    assert capsys.readouterr().out == nothing_to_do(out, "2 epochs")
    with pytest.raises(OutputRefused, match=r"tower pretrained with other settings \(epochs: saved 2, now 3\): choose "
                       "another --output_dir, or remove that folder to start over"):  # fmt: skip
        command(out, "--epochs=3")
    assert mtimes(out) == finished and not state.exists()

    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(OutputRefused, match=f"{other} is not empty and holds no segvla-pretrain-tower run"):
        command(other)
    assert [p.name for p in other.iterdir()] == ["notes.txt"]
    assert not (tmp_path / ("other" + pretrain_tower.STATE)).exists()


def test_bad_input_is_refused_by_name(tiny_inputs, tmp_path):
    vlm, frames = tiny_inputs
    with pytest.raises(ValueError, match="--output_dir is required"):
        config(vlm, frames, None)
    with pytest.raises(ValueError, match="--class_weights has 2 values; expected 6"):
        config(vlm, frames, tmp_path / "o", class_weights=[1.0, 2.0])
    with pytest.raises(FileNotFoundError, match=r"--vlm_path=.*nowhere: expected a SmolVLM folder"):
        pretrain_tower.pretrain(config(tmp_path / "nowhere", frames, tmp_path / "o"))


def test_smolvla_loads_the_pretrained_tower_and_freezes_it(tiny_inputs, tmp_path):
    """The folder as `--policy.vlm_model_name` with `load_vlm_weights=true`: the policy's tower holds the pretrained
    weights, and `freeze_vision_encoder=true` leaves them untouched by a training step."""
    import dataclasses

    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies import get_policy_class
    from test_policy_contract import CASES, tiny_config

    vlm, frames = tiny_inputs
    pretrain_tower.pretrain(config(vlm, frames, tmp_path / "tower", epochs=1))
    (case,) = [c for c in CASES if c.type == "segvla"]
    cfg = dataclasses.replace(
        tiny_config(case), vlm_model_name=str(tmp_path / "tower"), load_vlm_weights=True, freeze_vision_encoder=True,
        segmentation_feature_map={}, resize_imgs_with_padding=(32, 32),
    )  # fmt: skip
    cfg.input_features = {
        "observation.images.front": PolicyFeature(FeatureType.VISUAL, (3, 24, 32)),
        "observation.state": PolicyFeature(FeatureType.STATE, (6,)),
    }
    cfg.output_features = {"action": PolicyFeature(FeatureType.ACTION, (6,))}
    saved = load_file(tmp_path / "tower" / "model.safetensors")
    pretrained = {k.removeprefix("vision_model."): v for k, v in saved.items() if k.startswith("vision_model.")}
    for dtype in ("bfloat16", "float32"):  # SmolVLA's, and the one that keeps every bit (vlm_dtype)
        policy = get_policy_class("segvla")(dataclasses.replace(cfg, vlm_dtype=dtype))
        tower = policy.model.vlm_with_expert.get_vlm_model().vision_model
        for key, value in tower.state_dict().items():
            assert value.dtype == getattr(torch, dtype), key
            torch.testing.assert_close(value, pretrained[key].to(value.dtype), rtol=0, atol=0, msg=key)
        assert not any(p.requires_grad for p in tower.parameters())
    with pytest.raises(ValueError, match="vlm_dtype must be 'bfloat16' or 'float32', got 'fp8'"):
        dataclasses.replace(cfg, vlm_dtype="fp8")
