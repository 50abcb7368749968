"""Every suite trainer pushes what it made the way lerobot-train does, tested up to the upload call: the Hub's client
(HfApi) is replaced by a recorder, since the Hub cannot be reached here. Each pushed folder carries a model card."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import pytest
import torch

from so101_run_infra.hub import HubPushConfig, check_push


class FakeHfApi:
    """Records what a push would send: the repo created, and every file of the uploaded folder (README.md read)."""

    calls: ClassVar[list[tuple[str, dict]]] = []

    def __init__(self, *_, **__):
        pass

    def create_repo(self, repo_id: str, **kwargs):
        FakeHfApi.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
        return SimpleNamespace(repo_id=repo_id)

    def upload_folder(self, *, folder_path, repo_id: str, **kwargs):
        folder = Path(folder_path)
        files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
        card = (folder / "README.md").read_text() if (folder / "README.md").is_file() else None
        FakeHfApi.calls.append(("upload_folder", {"repo_id": repo_id, "files": files, "card": card, **kwargs}))
        return SimpleNamespace(repo_url=SimpleNamespace(url=f"https://huggingface.co/{repo_id}"))

    def create_tag(self, repo_id: str, **kwargs):
        FakeHfApi.calls.append(("create_tag", {"repo_id": repo_id, **kwargs}))

    def delete_tag(self, repo_id: str, **kwargs):
        FakeHfApi.calls.append(("delete_tag", {"repo_id": repo_id, **kwargs}))


@pytest.fixture
def hub(monkeypatch) -> list:
    import huggingface_hub
    import lerobot.datasets.lerobot_dataset as lerobot_dataset
    from huggingface_hub import RepoCard

    FakeHfApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    monkeypatch.setattr(lerobot_dataset, "HfApi", FakeHfApi)

    def push_card(card, repo_id, **kwargs):
        FakeHfApi.calls.append(("push_card", {"repo_id": repo_id, "card": str(card), **kwargs}))

    monkeypatch.setattr(RepoCard, "push_to_hub", push_card)
    return FakeHfApi.calls


def upload(calls: list, repo_id: str) -> dict:
    (created,) = [c for name, c in calls if name == "create_repo"]
    (uploaded,) = [c for name, c in calls if name == "upload_folder"]
    assert created["repo_id"] == uploaded["repo_id"] == repo_id
    return uploaded


def assert_card(card: str, *expected: str) -> None:
    """A card in LeRobot's layout: metadata, then the model, its data, the command and the result."""
    assert card.startswith("---\n") and "library_name: lerobot" in card and "license: apache-2.0" in card
    for section in ("## Model Details", "## Training Data", "## Training Command", "## Result"):
        assert section in card, section
    for text in expected:
        assert text in card, text


# ----- the flags -----------------------------------------------------------------------------------------------------
def test_a_push_without_a_repo_id_is_refused_before_any_work_naming_the_flags():
    from so101_segdepth_rl.config import RLTrainConfig

    with pytest.raises(
        ValueError, match=r"--model\.push_to_hub=true needs --model\.repo_id=.*--model\.push_to_hub=false"
    ):
        HubPushConfig(push_to_hub=True).check("model")
    with pytest.raises(ValueError, match=r"--laq\.repo_id='laq' must be 'user_or_org/name'"):
        check_push(True, "laq", "laq")
    check_push(False, None, "artifact")
    # segdepth-rl-train keeps lerobot-train's default (--policy.push_to_hub=true) and so its demand for a repo id
    with pytest.raises(ValueError, match=r"--policy\.push_to_hub=true needs --policy\.repo_id"):
        RLTrainConfig()


# ----- segdepth-rl-train ---------------------------------------------------------------------------------------------
def test_segdepth_rl_train_pushes_its_last_checkpoint_with_a_model_card(hub, tmp_path):
    from tiny_segdepth import TINY, tiny_config

    from lerobot_policy_segdepth import SegDepthConfig, SegDepthPolicy, make_segdepth_pre_post_processors
    from so101_run_infra.checkpoints import save_policy
    from so101_segdepth_rl.config import RLTrainConfig
    from so101_segdepth_rl.publish import push_policy

    policy_cfg = tiny_config((32, 43))
    stats = {"observation.state": {"mean": torch.zeros(6), "std": torch.ones(6)}}
    numbered = tmp_path / "run/checkpoints/0000000320"
    save_policy(
        numbered / "pretrained_model", SegDepthPolicy(policy_cfg), *make_segdepth_pre_post_processors(policy_cfg, stats)
    )
    (tmp_path / "run/checkpoints/last").symlink_to(numbered.name)
    cfg = RLTrainConfig(policy=SegDepthConfig(repo_id="me/segdepth_rl", **TINY), output_dir=tmp_path / "run")
    assert cfg.policy.push_to_hub  # lerobot-train's default
    history = [{"frames": 320, "updates": 60, "success_rate": 0.5, "return": 12.25, "episodes": 2, "wall_min": 1.5}]
    url = push_policy(cfg, {"checkpoint": str(tmp_path / "run/checkpoints/last/pretrained_model"), "history": history})
    assert url == "https://huggingface.co/me/segdepth_rl"
    pushed = upload(hub, "me/segdepth_rl")
    assert {
        "model.safetensors",
        "config.json",
        "policy_preprocessor.json",
        "policy_postprocessor.json",
        "README.md",
    } <= set(pushed["files"])
    assert_card(
        pushed["card"],
        "# Model Card for me/segdepth_rl",
        "segdepth-rl-train",
        "task ReachCube",
        "| success_rate (own evaluation, 2 episodes) | 0.5 |",
        "| return (own evaluation, 2 episodes) | 12.25 |",
        "| `observation.images.wrist_depth` | VISUAL | `(1, 32, 43)` |",
        "lerobot-eval --policy.path=me/segdepth_rl --env.type=so101_twin",
    )


# ----- so101-seg-train ------------------------------------------------------------------------------------------------
def test_so101_seg_train_pushes_the_best_segmenter_with_a_model_card(hub, tmp_path, monkeypatch):
    from test_segmenter import write_toy_dataset

    from so101_segmenter import train

    write_toy_dataset(tmp_path / "data", 12)
    write_toy_dataset(tmp_path / "test", 4, seed=1)
    flags = [f"--data.path={tmp_path / 'data'}", "--data.img_height=36", "--data.img_width=44", "--data.augment=none",
             f"--data.test_path={tmp_path / 'test'}", "--model.pretrained=false", "--epochs=1", "--batch_size=6",
             "--threads=1", "--grid_size=2", f"--output_dir={tmp_path / 'run'}",
             "--model.push_to_hub=true", "--model.repo_id=me/so101_segmenter"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", ["so101-seg-train", *flags])
    train.main()
    pushed = upload(hub, "me/so101_segmenter")
    assert sorted(pushed["files"]) == ["README.md", "config.json", "model.safetensors"]
    best = json.loads((tmp_path / "run/metrics.jsonl").read_text().splitlines()[0])["val_miou"]
    test = json.loads((tmp_path / "run/test_metrics.json").read_text())
    assert_card(
        pushed["card"],
        "pipeline_tag: image-segmentation",
        f"| best_val_miou | {round(best, 4)} |",
        f"| test_miou | {round(test['miou'], 4)} |",
        "so101-seg-train --data.path=",  # the command as it was run
        "--model.repo_id=me/so101_segmenter",
        f"`{tmp_path / 'data'}` (36x44",
    )
    assert (tmp_path / "run/best/README.md").read_text() == pushed["card"]  # the card stays with the local copy


# ----- hlrp-train-laq and hlrp-train-trunk ----------------------------------------------------------------------------
def test_hlrp_stage_trainers_push_their_outputs_with_model_cards(hub, tmp_path):
    from lerobot_policy_hlrp.commands.train_trunk import TrunkTrainConfig, push_artifact
    from lerobot_policy_hlrp.pretrain.laq_config import LAQTrainConfig, PairDataConfig
    from lerobot_policy_hlrp.pretrain.laq_publish import push_laq
    from lerobot_policy_hlrp.pretrain.trunk_data import TrunkDatasetConfig

    (tmp_path / "laq").mkdir()
    (tmp_path / "laq/model.safetensors").write_bytes(b"weights")
    (tmp_path / "laq/config.json").write_text("{}")
    cfg = LAQTrainConfig(
        datasets=[PairDataConfig(repo_id="me/twin_pairs", camera_key="observation.images.front")],
        laq=HubPushConfig(push_to_hub=True, repo_id="me/laq", tags=["hlrp"]),
    )
    metrics = {
        "recon_mse": 0.0125,
        "copy_baseline_mse": 0.05,
        "perplexity": 7.5,
        "used_codes": 9,
        "pairs": 64,
        "step": 200,
    }
    push_laq(cfg, {"laq": str(tmp_path / "laq"), "metrics": metrics})
    pushed = upload(hub, "me/laq")
    assert sorted(pushed["files"]) == ["README.md", "config.json", "model.safetensors"]
    assert_card(pushed["card"], "| held-out recon_mse | 0.0125 |", "| held-out copy_baseline_mse | 0.05 |",
                "`me/twin_pairs`", "- me/twin_pairs", "- hlrp\n", "hlrp-train-trunk --laq_path=laq")  # fmt: skip

    hub.clear()
    (tmp_path / "artifact").mkdir()
    (tmp_path / "artifact/core.safetensors").write_bytes(b"weights")
    trunk = TrunkTrainConfig(
        datasets=[TrunkDatasetConfig(repo_id="me/twin_lift", cameras=["front"])],
        laq_path="me/laq",
        artifact=HubPushConfig(push_to_hub=True, repo_id="me/hlrp_trunk"),
    )
    push_artifact(trunk, {"artifact": str(tmp_path / "artifact"), "history": [{"step": 10, "loss": 0.123456789}]})
    pushed = upload(hub, "me/hlrp_trunk")
    assert sorted(pushed["files"]) == ["README.md", "core.safetensors"]
    assert_card(pushed["card"], "| last window loss | 0.12346 |", "mode `multitask`", "LAQ labels from `me/laq`",
                "--policy.stage2_artifact=artifact")  # fmt: skip
    with pytest.raises(ValueError, match=r"--artifact\.push_to_hub=true needs --artifact\.repo_id"):
        TrunkTrainConfig(laq_path="x", artifact=HubPushConfig(push_to_hub=True))


# ----- so101-twin-record ----------------------------------------------------------------------------------------------
def test_so101_twin_record_pushes_like_lerobot_record(hub, tmp_path, monkeypatch):
    from lerobot_env_so101_twin.commands import record

    flags = ["--robot.cameras=[wrist]", "--robot.observation_height=24", "--robot.observation_width=32",
             "--dataset.repo_id=me/twin_reach", f"--dataset.root={tmp_path / 'data'}", "--dataset.num_episodes=1",
             "--dataset.episode_time_s=0.2", "--robot.task=ReachCube", "--num_workers=1", "--fail_fast_episodes=0",
             "--dataset.push_to_hub=true", "--dataset.private=true", "--dataset.tags=[so101]"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", ["so101-twin-record", *flags])
    record.main()
    (created,) = [c for name, c in hub if name == "create_repo"]
    assert created == {"repo_id": "me/twin_reach", "private": True, "repo_type": "dataset", "exist_ok": True}
    (uploaded,) = [c for name, c in hub if name == "upload_folder"]
    assert "meta/info.json" in uploaded["files"] and uploaded["repo_type"] == "dataset"
    (card,) = [c for name, c in hub if name == "push_card"]
    assert "so101-twin-record" in card["card"] and "--dataset.push_to_hub=true" in card["card"]
    assert "1 episodes, 6 frames" in card["card"] and "- so101" in card["card"]
    assert [name for name, _ in hub][-1] == "create_tag"  # LeRobot tags the codebase version, as lerobot-record
