"""The contract every policy plugin of the workspace keeps with LeRobot 0.6.1, parametrised over policy types.

A new plugin joins by adding a `PolicyCase`: its type, the flags that make it tiny, and what the simulator
must provide for it in lerobot-eval.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from clitools import eval_in_twin, run_cli
from conftest import GT_SIZE
from lerobot.configs.policies import PreTrainedConfig
from lerobot.datasets import LeRobotDataset, LeRobotDatasetMetadata
from lerobot.datasets.factory import resolve_delta_timestamps
from lerobot.policies import get_policy_class
from lerobot.policies.factory import make_policy, make_pre_post_processors
from lerobot.utils.import_utils import register_third_party_plugins

from so101_devtools.tiny_models import tiny_siglip_dir, tiny_smolvlm_dir
from so101_devtools.tiny_policies import TINY_IMF, TINY_SEGDEPTH

register_third_party_plugins()


@dataclass(frozen=True)
class PolicyCase:
    type: str
    tiny: dict[str, object]  # config overrides that make a fast model
    env_flags: tuple[str, ...] = ()  # lerobot-eval flags so the twin provides the policy's inputs
    action_dim: int = 6
    chunk: int = 1
    extra: dict = field(default_factory=dict)

    def cli(self) -> list[str]:
        return [f"--policy.{k}={json.dumps(v) if isinstance(v, list) else v}" for k, v in self.tiny.items()]


CASES = [
    PolicyCase(
        type="segdepth",
        tiny={**TINY_SEGDEPTH, "augment_pad": 2},
        env_flags=("--env.depth=true", "--env.segmentation=true"),
    ),
    PolicyCase(
        type="segvla",
        tiny={
            "vlm_model_name": str(tiny_smolvlm_dir()),
            "num_vlm_layers": 2,
            "resize_imgs_with_padding": [32, 32],
            "max_state_dim": 8,
            "max_action_dim": 8,
            "chunk_size": 4,
            "n_action_steps": 4,
            "num_steps": 2,
            "segmentation_feature_map": {
                "observation.images.front": "observation.segmentation.front",
                "observation.images.wrist": "observation.segmentation.wrist",
            },
            "perception_source": "ground_truth",
            "segmentation_num_classes": 6,
            "segmentation_classes_from_task": True,  # the prompt's "cube" gets the class token
            "segmentation_geometry_class_ids": [3, 5],
            "segmentation_top_k_classes": 2,
            "inference_noise_seed": 0,  # flow matching samples noise; a fixed seed makes reloads comparable
        },
        env_flags=("--env.segmentation=true",),
        chunk=4,
    ),
    PolicyCase(
        type="imf",
        tiny={
            "siglip_model": str(tiny_siglip_dir()),
            **TINY_IMF,
            "inference_noise_seed": 0,  # a fixed seed makes reloads comparable
        },
        chunk=4,
    ),
    PolicyCase(
        type="hlrp",
        tiny={
            "core.vlm_model_name": str(tiny_smolvlm_dir()),
            "core.num_vlm_layers": 2,
            "core.head_hidden": 32,
            "core.head_depth": 2,
            "core.latent_dim": 8,
            "core.codebook_size": 16,
            "core.action_dim": 8,
            "core.chunk_size": 4,
            "core.tokenizer_max_length": 16,
            "load_vlm_weights": False,  # the tiny folder holds no weights: SmolVLM's architecture, random
            "n_action_steps": 2,
            "cameras": ["front"],
        },
        chunk=4,
    ),
]


@pytest.fixture(params=CASES, ids=lambda case: case.type)
def case(request) -> PolicyCase:
    return request.param


def tiny_config(case: PolicyCase) -> PreTrainedConfig:
    """The case's config; a dotted key ("core.chunk_size") sets a field of a nested config, as on the command line."""
    cls = PreTrainedConfig.get_choice_class(case.type)
    kwargs = {k: v for k, v in case.tiny.items() if "." not in k}
    nested: dict[str, dict] = {}
    for key, value in case.tiny.items():
        if "." in key:
            outer, inner = key.split(".", 1)
            nested.setdefault(outer, {})[inner] = value
    for outer, fields in nested.items():
        kwargs[outer] = dataclasses.replace(cls.__dataclass_fields__[outer].default_factory(), **fields)
    return cls(device="cpu", push_to_hub=False, **kwargs)


def policy_and_processors(case: PolicyCase, root: Path):
    meta = LeRobotDatasetMetadata("local/twin_demo", root=root)
    cfg = tiny_config(case)
    policy = make_policy(cfg, ds_meta=meta)
    pre, post = make_pre_post_processors(cfg, dataset_stats=meta.stats)
    return cfg, meta, policy, pre, post


def training_batch(cfg, meta, root: Path, indices: list[int]) -> dict:
    ds = LeRobotDataset("local/twin_demo", root=root, delta_timestamps=resolve_delta_timestamps(cfg, meta))
    items = [ds[i] for i in indices]
    batch = {k: torch.stack([it[k] for it in items]) for k, v in items[0].items() if isinstance(v, torch.Tensor)}
    batch["task"] = [it["task"] for it in items]
    return batch


def inference_frame(root: Path, index: int) -> dict:
    item = LeRobotDataset("local/twin_demo", root=root)[index]
    frame = {k: v for k, v in item.items() if k.startswith("observation.")}
    frame["task"] = item["task"]
    return frame


def test_discovered_in_a_fresh_process(case):
    code = f"""
from lerobot.utils.import_utils import register_third_party_plugins
register_third_party_plugins()
from lerobot.configs.policies import PreTrainedConfig
from lerobot.policies import get_policy_class
from lerobot.policies.factory import make_pre_post_processors
cls = get_policy_class("{case.type}")
cfg = PreTrainedConfig.get_choice_class("{case.type}")()
assert cls.name == cfg.type == "{case.type}", (cls.name, cfg.type)
print(cls.__module__ + "." + cls.__name__)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("Policy")


def test_forward_backward_on_a_recorded_batch(case, gt_dataset):
    cfg, meta, policy, pre, _ = policy_and_processors(case, gt_dataset)
    policy.train()
    batch = pre(training_batch(cfg, meta, gt_dataset, [0, 5, 40, 130]))
    loss, info = policy.forward(batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in policy.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    per_sample, _ = policy.forward(batch, reduction="none")
    assert per_sample.shape == (4,)
    json.dumps(info)  # loggable


def test_select_action_and_chunk_shapes(case, gt_dataset):
    _, _, policy, pre, post = policy_and_processors(case, gt_dataset)
    policy.eval()
    policy.reset()
    batch = pre(inference_frame(gt_dataset, 10))
    action = post(policy.select_action(batch))
    assert action.shape == (1, case.action_dim) and torch.isfinite(action).all()
    policy.reset()
    chunk = policy.predict_action_chunk(pre(inference_frame(gt_dataset, 10)))
    assert chunk.shape == (1, case.chunk, case.action_dim)


def test_save_then_reload_acts_identically(case, gt_dataset, tmp_path):
    _, _, policy, pre, post = policy_and_processors(case, gt_dataset)
    policy.eval()
    policy.save_pretrained(tmp_path)
    pre.save_pretrained(tmp_path)
    post.save_pretrained(tmp_path)
    loaded_cfg = PreTrainedConfig.from_pretrained(tmp_path)
    loaded_cfg.pretrained_path = tmp_path
    loaded = get_policy_class(case.type).from_pretrained(tmp_path, config=loaded_cfg)
    overrides = {"device_processor": {"device": "cpu"}, "rename_observations_processor": {"rename_map": {}}}
    pre2, post2 = make_pre_post_processors(loaded_cfg, pretrained_path=str(tmp_path), preprocessor_overrides=overrides)
    policy.reset()
    loaded.reset()
    for index in (0, 1, 2, 3, 20):
        frame = inference_frame(gt_dataset, index)
        a = post(policy.select_action(pre(dict(frame))))
        b = post2(loaded.select_action(pre2(dict(frame))))
        torch.testing.assert_close(a, b, rtol=0, atol=0)


TRAIN = [
    "--dataset.repo_id=local/twin_demo",
    "--batch_size=2",
    "--num_workers=0",
    "--save_freq=2",
    "--log_freq=1",
    "--wandb.enable=false",
    "--policy.device=cpu",
    "--policy.push_to_hub=false",
]


@pytest.mark.slow
def test_lerobot_train_finetune_resume_and_eval(case, gt_dataset, tmp_path):
    data = f"--dataset.root={gt_dataset}"
    run_cli(
        [
            "lerobot-train",
            f"--policy.type={case.type}",
            *case.cli(),
            data,
            *TRAIN,
            "--steps=2",
            f"--output_dir={tmp_path / 'scratch'}",
        ],
        cwd=tmp_path,
    )
    ckpt = tmp_path / "scratch/checkpoints/last/pretrained_model"
    assert (ckpt / "model.safetensors").is_file() and (ckpt / "policy_preprocessor.json").is_file()

    # fine-tune from the checkpoint
    run_cli(
        ["lerobot-train", f"--policy.path={ckpt}", data, *TRAIN, "--steps=2", f"--output_dir={tmp_path / 'finetune'}"],
        cwd=tmp_path,
    )
    assert (tmp_path / "finetune/checkpoints/000002/pretrained_model/model.safetensors").is_file()

    # resume the first run to step 4
    run_cli(
        ["lerobot-train", f"--config_path={ckpt / 'train_config.json'}", "--resume=true", "--steps=4"], cwd=tmp_path
    )
    state = json.loads((tmp_path / "scratch/checkpoints/last/training_state/training_step.json").read_text())
    assert state["step"] == 4

    overall = eval_in_twin(ckpt, tmp_path / "eval", GT_SIZE, tmp_path, flags=case.env_flags)
    assert overall["n_episodes"] == 1 and 0.0 <= overall["pc_success"] <= 100.0
