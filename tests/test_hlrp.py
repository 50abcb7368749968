"""HLRP stages 2 and 3: the shared core, the action adapter, the stage-2 artifact and its strict checks,
hlrp-train-trunk end to end (online LAQ labels, resume), and the hlrp policy initialised from an artifact."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from clitools import TASK, run_cli
from run_again import mtimes, nothing_to_do
from safetensors.torch import load_file

import lerobot_policy_hlrp  # noqa: F401  (registers --policy.type=hlrp)
from lerobot_policy_hlrp.artifact import (
    WEIGHTS,
    check_laq,
    check_matches,
    core_config,
    load_core_weights,
    read_manifest,
    save_artifact,
)
from lerobot_policy_hlrp.laq import LAQ, LAQConfig, laq_checkpoint_hash
from lerobot_policy_hlrp.pretrain.action_adapter import ActionAdapter, ActionAdapterConfig, AdapterEntry
from lerobot_policy_hlrp.pretrain.frame_pairs import pair_starts
from lerobot_policy_hlrp.pretrain.trunk_data import TrunkDatasetConfig, episode_bounds
from lerobot_policy_hlrp.trunk import CoreConfig, FlowHead, SharedCore, load_vlm
from so101_devtools.tiny_models import tiny_smolvlm_dir
from so101_run_infra.cli import OutputRefused
from so101_run_infra.runs import RUN_FINISHED

TINY_LAQ = LAQConfig(
    image_size=32, patch_size=8, dim=32, spatial_depth=1, temporal_depth=1, decoder_depth=1, heads=2, dim_head=16,
    code_seq_len=1, codebook_size=16, quant_dim=8,
)  # fmt: skip


def tiny_core_config(**overrides) -> CoreConfig:
    base = dict(
        vlm_model_name=str(tiny_smolvlm_dir()), num_vlm_layers=2, head_hidden=32, head_depth=2, latent_dim=8,
        code_seq_len=1, codebook_size=16, action_dim=8, chunk_size=4, tokenizer_max_length=16,
    )  # fmt: skip
    return CoreConfig(**{**base, **overrides})


def tiny_core(seed: int = 0, **overrides) -> SharedCore:
    torch.manual_seed(seed)
    cfg = tiny_core_config(**overrides)
    return SharedCore(cfg, load_vlm(cfg.vlm_model_name, load_weights=False))


def tokens(texts: list[str], length: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    from transformers import AutoTokenizer

    enc = AutoTokenizer.from_pretrained(tiny_smolvlm_dir())(
        texts, padding="max_length", max_length=length, return_tensors="pt"
    )
    return enc["input_ids"], enc["attention_mask"]


@pytest.fixture(scope="module")
def tiny_laq_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("laq") / "laq"
    LAQ(TINY_LAQ).save_pretrained(folder)
    return folder


# ----- the action adapter -------------------------------------------------------------------------------------
def test_adapter_places_each_dataset_in_its_slots_and_masks_the_rest():
    adapter = ActionAdapter(
        ActionAdapterConfig(
            target_dim=6,
            entries=[AdapterEntry("a", 3, slots=[0, 2, 5]), AdapterEntry("b", 2)],
        )
    )
    out, mask = adapter("a", torch.tensor([[1.0, 2.0, 3.0]]))
    assert out.tolist() == [[1.0, 0.0, 2.0, 0.0, 0.0, 3.0]]
    assert mask.tolist() == [True, False, True, False, False, True]
    out, mask = adapter("b", torch.tensor([7.0, 8.0]))
    assert out.tolist() == [7.0, 8.0, 0.0, 0.0, 0.0, 0.0] and mask.sum() == 2


def test_adapter_names_the_dataset_and_both_dimensions():
    adapter = ActionAdapter(ActionAdapterConfig(target_dim=8, entries=[AdapterEntry("oxe/bridge", 5)]))
    with pytest.raises(ValueError, match=r"'oxe/bridge'.*expects a 5-d action.*\(3,\)"):
        adapter.check("oxe/bridge", (3,))  # HLRP's run log's "expected 5, got 3", now before the first step
    with pytest.raises(ValueError, match="does not cover it"):
        adapter.check("oxe/fractal", (7,))
    with pytest.raises(ValueError, match="within the target dimension 8"):
        ActionAdapter(ActionAdapterConfig(target_dim=8, entries=[AdapterEntry("x", 2, slots=[1, 8])]))


# ----- the core -----------------------------------------------------------------------------------------------
def test_pooling_ignores_padding_tokens_and_the_vision_tower_is_frozen():
    core = tiny_core().eval()
    ids, mask = tokens([TASK, TASK])
    ids[1, mask[1] == 0] = 5  # change only what the mask hides
    img = torch.rand(1, 3, 48, 64).expand(2, -1, -1, -1)
    pooled = core.pooled([img], ids, mask)
    torch.testing.assert_close(pooled[0], pooled[1])
    other, _ = tokens(["reach the cube", TASK])
    assert not torch.allclose(core.pooled([img], other, mask)[0], pooled[0])  # the instruction does matter
    core.train()
    core.action_loss(core.pooled([img], ids, mask), torch.randn(2, 4, 8), torch.ones(2, 4, 8)).mean().backward()
    assert all(p.grad is None for p in core.vlm.vision_model.parameters())
    assert core.vlm.text_model.layers[0].self_attn.q_proj.weight.grad is not None
    assert len(core.vlm.text_model.layers) == 2


def test_flow_head_learns_a_conditional_target_and_samples_it():
    torch.manual_seed(0)
    head = FlowHead(cond_dim=2, target_dim=3, hidden=64, depth=3, alpha=1.5, beta=1.0)
    cond = torch.eye(2)
    target = torch.tensor([[1.0, -2.0, 0.5], [-1.0, 0.0, 2.0]])
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    for _ in range(600):
        idx = torch.randint(0, 2, (32,))
        loss = head.loss(cond[idx], target[idx]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    samples = head.sample(cond.repeat_interleave(50, 0), steps=10).view(2, 50, 3)
    # a point mass per condition: every sample lands near its own target, not the other one
    assert (samples.mean(1) - target).abs().max() < 0.15, samples.mean(1)


def test_regression_and_flow_action_losses_respect_the_mask():
    for head in ("regression", "flow"):
        core = tiny_core(action_head=head)
        cond = torch.randn(2, core.hidden_size)
        actions = torch.randn(2, 4, 8)
        mask = torch.zeros(2, 4, 8, dtype=torch.bool)
        mask[..., :6] = True
        torch.manual_seed(1)
        a = core.action_loss(cond, actions, mask)
        changed = actions.clone()
        changed[..., 6:] = 100.0  # masked-out dims must not count
        torch.manual_seed(1)
        b = core.action_loss(cond, changed, mask) if head == "regression" else a
        torch.testing.assert_close(a, b)
        assert core.sample_actions(cond).shape == (2, 4, 8)
    with pytest.raises(ValueError, match=r"chunk_size=4, action_dim=8"):
        core.action_loss(cond, torch.randn(2, 4, 6), mask[..., :6])


# ----- the artifact -------------------------------------------------------------------------------------------
def test_artifact_round_trip_is_strict_and_rebuilds_offline(tmp_path, tiny_laq_dir):
    core = tiny_core(seed=3).eval()
    laq = {"folder": str(tiny_laq_dir), "sha256": laq_checkpoint_hash(tiny_laq_dir), "config": {}}
    save_artifact(tmp_path / "art", core, mode="multitask", laq=laq, step=7)
    manifest = read_manifest(tmp_path / "art")
    assert manifest["step"] == 7 and manifest["laq"]["sha256"] == laq["sha256"]
    # rebuilt from the manifest alone (SmolVLM's config dict), weights strict
    rebuilt = SharedCore(core_config(manifest), load_vlm("unused", False, manifest["vlm_config"])).eval()
    load_core_weights(rebuilt, tmp_path / "art")
    ids, mask = tokens([TASK])
    img = torch.rand(1, 3, 40, 40)
    torch.testing.assert_close(rebuilt.pooled([img], ids, mask), core.pooled([img], ids, mask))
    # a core of another size is refused with the differing fields named
    with pytest.raises(ValueError, match=r"chunk_size: artifact 4 vs policy 8"):
        check_matches(manifest, tiny_core_config(chunk_size=8), tmp_path / "art")
    bigger = tiny_core(head_hidden=48)
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_core_weights(bigger, tmp_path / "art")
    # another LAQ (other weights) is refused
    torch.manual_seed(99)
    LAQ(TINY_LAQ).save_pretrained(tmp_path / "other_laq")
    with pytest.raises(ValueError, match="is not the one stage-2 artifact"):
        check_laq(manifest, tmp_path / "other_laq", tmp_path / "art")
    check_laq(manifest, tiny_laq_dir, tmp_path / "art")
    (tmp_path / "art" / WEIGHTS).unlink()
    with pytest.raises(FileNotFoundError, match=WEIGHTS):
        read_manifest(tmp_path / "art")


# ----- stage 2 data and command --------------------------------------------------------------------------------
def test_pairs_stay_inside_episodes_and_a_long_gap_is_refused(gt_dataset):
    from lerobot.datasets import LeRobotDatasetMetadata

    meta = LeRobotDatasetMetadata("local/twin_demo", root=gt_dataset)
    starts = pair_starts(episode_bounds(meta, None), 9)
    ends = [int(e) for e in meta.episodes["dataset_to_index"]]
    for end in ends:
        assert not any(end - 9 <= s < end for s in starts)  # t + 9 would leave the episode
    assert len(starts) == meta.total_frames - 9 * meta.total_episodes
    with pytest.raises(ValueError, match=r"episode 0 has \d+ frames, the frame gap is 200 frames"):
        pair_starts(episode_bounds(meta, None), 200)


def trunk_args(gt_dataset: Path, laq: Path, out: Path, steps: int, extra: tuple[str, ...] = ()) -> list[str]:
    datasets = [{"repo_id": "local/twin_demo", "root": str(gt_dataset), "cameras": ["front"], "gap_s": 0.3}]
    core = tiny_core_config()
    return [
        "hlrp-train-trunk",
        f"--datasets={json.dumps(datasets)}",
        f"--adapter={json.dumps({'target_dim': 8, 'entries': [{'dataset': 'local/twin_demo', 'action_dim': 6}]})}",
        f"--laq_path={laq}",
        *[f"--core.{k}={v}" for k, v in dataclasses.asdict(core).items()],
        "--load_vlm_weights=false",
        f"--steps={steps}",
        "--batch_size=4",
        "--num_workers=0",
        "--log_freq=2",
        "--save_freq=2",
        f"--output_dir={out}",
        *extra,
    ]


@pytest.mark.slow
def test_train_trunk_learns_online_and_resumes_exactly(gt_dataset, tiny_laq_dir, tmp_path):
    run_cli(trunk_args(gt_dataset, tiny_laq_dir, tmp_path / "straight", 6), cwd=tmp_path)
    run_cli(trunk_args(gt_dataset, tiny_laq_dir, tmp_path / "split", 4), cwd=tmp_path)
    run_cli(trunk_args(gt_dataset, tiny_laq_dir, tmp_path / "split", 6, ("--resume=true",)), cwd=tmp_path)
    straight = load_file(tmp_path / "straight" / "artifact" / WEIGHTS)
    split = load_file(tmp_path / "split" / "artifact" / WEIGHTS)
    for key, value in straight.items():  # the resumed run saw the same batches, noise and labels
        torch.testing.assert_close(split[key], value, msg=key)
    rows = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6]
    for row in rows:
        assert row["latent_flow"] > 0 and row["action_regression"] > 0 and 0 <= row["label_share"] < 1
    manifest = read_manifest(tmp_path / "straight" / "artifact")
    assert manifest["laq"]["sha256"] == laq_checkpoint_hash(tiny_laq_dir) and manifest["mode"] == "multitask"
    # a different core on resume, and a fresh run into a used folder, are refused before any step
    bad = run_cli(
        trunk_args(gt_dataset, tiny_laq_dir, tmp_path / "split", 8, ("--resume=true", "--core.head_hidden=64")),
        cwd=tmp_path,
        check=False,
    )
    assert bad.returncode != 0 and "core.head_hidden: saved" in bad.stderr and "Traceback" not in bad.stderr
    again = run_cli(trunk_args(gt_dataset, tiny_laq_dir, tmp_path / "split", 8), cwd=tmp_path, check=False)
    assert again.returncode != 0 and "Traceback" not in again.stderr
    assert "(steps: saved 6, now 8): pass --resume=true to continue it" in again.stderr
    # the other two modes: token cross-entropy on the LAQ codes, and actions alone (flow head) without a LAQ
    run_cli(trunk_args(gt_dataset, tiny_laq_dir, tmp_path / "codes", 2, ("--mode=codes",)), cwd=tmp_path)
    row = json.loads((tmp_path / "codes" / "metrics.jsonl").read_text().splitlines()[-1])
    assert 0 < row["code_ce"] < 10 and "latent_flow" not in row and "action_regression" not in row
    flow = ("--mode=actions", "--laq_path=null", "--core.action_head=flow")
    run_cli(trunk_args(gt_dataset, tiny_laq_dir, tmp_path / "actions", 2, flow), cwd=tmp_path)
    row = json.loads((tmp_path / "actions" / "metrics.jsonl").read_text().splitlines()[-1])
    assert row["action_flow"] > 0 and "latent_flow" not in row and row["label_share"] < 0.01
    assert read_manifest(tmp_path / "actions" / "artifact")["laq"] == {}


def test_train_trunk_refuses_an_uncovered_dataset_before_any_step(gt_dataset, tiny_laq_dir, tmp_path):
    from lerobot_policy_hlrp.commands.train_trunk import TrunkTrainConfig, train

    cfg = TrunkTrainConfig(
        datasets=[TrunkDatasetConfig(repo_id="local/twin_demo", root=str(gt_dataset))],
        adapter=ActionAdapterConfig(target_dim=8, entries=[AdapterEntry("local/twin_demo", 5)]),
        laq_path=str(tiny_laq_dir),
        core=tiny_core_config(),
        load_vlm_weights=False,
        output_dir=tmp_path / "out",
    )
    with pytest.raises(ValueError, match=r"'local/twin_demo'.*expects a 5-d action.*\(6,\)"):
        train(cfg)
    assert not (tmp_path / "out" / "checkpoints").exists()
    cfg.adapter = ActionAdapterConfig(target_dim=8, entries=[AdapterEntry("local/twin_demo", 6)])
    cfg.datasets[0].gap_s = 10.0
    with pytest.raises(ValueError, match=r"'local/twin_demo' \(.*info.json\), gap_s=10.0: episode 0 has \d+ frames, "):
        train(cfg)
    cfg.datasets[0].gap_s = 0.31  # between two frames at 30 fps
    with pytest.raises(ValueError, match=r"info\.json: gap_s=0\.31 is 9\.3 frames at the dataset's fps=30"):
        train(cfg)
    cfg.datasets[0].gap_s, cfg.datasets[0].cameras = 0.3, ["front", "top"]
    info = gt_dataset / "meta" / "info.json"
    with pytest.raises(ValueError, match=rf"\({info}\) has no camera \['observation\.images\.top'\]; its cameras"):
        train(cfg)
    assert not (tmp_path / "out" / "checkpoints").exists()


# ----- stage 3 from the artifact ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def artifact_dir(tmp_path_factory, tiny_laq_dir) -> Path:
    folder = tmp_path_factory.mktemp("stage2") / "artifact"
    laq = {"folder": str(tiny_laq_dir), "sha256": laq_checkpoint_hash(tiny_laq_dir), "config": {}}
    save_artifact(folder, tiny_core(seed=5), mode="multitask", laq=laq, step=1)
    return folder


def hlrp_policy(gt_dataset: Path, **kwargs):
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.datasets import LeRobotDatasetMetadata
    from lerobot.policies.factory import make_policy

    meta = LeRobotDatasetMetadata("local/twin_demo", root=gt_dataset)
    cfg = PreTrainedConfig.get_choice_class("hlrp")(device="cpu", push_to_hub=False, cameras=["front"], **kwargs)
    return make_policy(cfg, ds_meta=meta)


def test_policy_starts_from_the_artifact_weights(gt_dataset, artifact_dir, tiny_laq_dir):
    policy = hlrp_policy(
        gt_dataset,
        init_mode="artifact",
        stage2_artifact=str(artifact_dir),
        n_action_steps=2,
        latent_loss_weight=0.5,
        laq_path=str(tiny_laq_dir),
    )
    stored = load_file(artifact_dir / WEIGHTS)
    for key, value in policy.core.state_dict().items():
        torch.testing.assert_close(value, stored[key], msg=key)
    assert policy.config.core == core_config(read_manifest(artifact_dir))  # sizes came from the manifest
    assert any(p.requires_grad for p in policy.core.latent_head.parameters())
    assert not any(k.startswith("_laq") or "laq." in k for k in policy.state_dict())  # the LAQ is not saved
    # a training batch carries frames (t, t + 9); the LAQ labels them and the latent head learns from them
    from lerobot.datasets import LeRobotDataset, LeRobotDatasetMetadata
    from lerobot.datasets.factory import resolve_delta_timestamps
    from lerobot.policies.factory import make_pre_post_processors

    meta = LeRobotDatasetMetadata("local/twin_demo", root=gt_dataset)
    ds = LeRobotDataset(
        "local/twin_demo", root=gt_dataset, delta_timestamps=resolve_delta_timestamps(policy.config, meta)
    )
    items = [ds[i] for i in (0, len(ds) - 1)]  # lerobot-record keeps wall time: a loaded machine records fewer
    batch = {k: torch.stack([it[k] for it in items]) for k, v in items[0].items() if isinstance(v, torch.Tensor)}
    batch["task"] = [it["task"] for it in items]
    assert batch["observation.images.front"].shape[1] == 2
    pre, _ = make_pre_post_processors(policy.config, dataset_stats=meta.stats)
    policy.train()
    loss, info = policy.forward(pre(batch))
    loss.backward()
    assert info["latent_loss"] > 0 and info["action_loss"] > 0
    assert all(p.grad is not None for p in policy.core.latent_head.parameters())


def test_policy_refuses_a_conflicting_core_or_another_laq(gt_dataset, artifact_dir, tmp_path):
    with pytest.raises(ValueError, match=r"chunk_size=8 \(artifact: 4\)"):
        hlrp_policy(
            gt_dataset,
            init_mode="artifact",
            stage2_artifact=str(artifact_dir),
            core=dataclasses.replace(CoreConfig(), chunk_size=8),
        )
    torch.manual_seed(123)
    LAQ(TINY_LAQ).save_pretrained(tmp_path / "other_laq")
    with pytest.raises(ValueError, match="is not the one stage-2 artifact"):
        hlrp_policy(
            gt_dataset,
            init_mode="artifact",
            stage2_artifact=str(artifact_dir),
            n_action_steps=2,
            latent_loss_weight=0.5,
            laq_path=str(tmp_path / "other_laq"),
        )
    with pytest.raises(FileNotFoundError, match=r"manifest\.json"):
        hlrp_policy(gt_dataset, init_mode="artifact", stage2_artifact=str(tmp_path), n_action_steps=2)


@pytest.mark.slow
def test_lerobot_train_from_the_artifact_with_the_latent_loss(gt_dataset, artifact_dir, tiny_laq_dir, tmp_path):
    out = tmp_path / "stage3"
    first = run_cli(
        [
            "lerobot-train",
            "--dataset.repo_id=local/twin_demo",
            f"--dataset.root={gt_dataset}",
            "--policy.type=hlrp",
            "--policy.device=cpu",
            "--policy.push_to_hub=false",
            "--policy.init_mode=artifact",
            f"--policy.stage2_artifact={artifact_dir}",
            "--policy.cameras=[front]",
            "--policy.n_action_steps=2",
            "--policy.latent_loss_weight=0.5",
            f"--policy.laq_path={tiny_laq_dir}",
            "--policy.laq_gap_frames=9",
            "--steps=2",
            "--batch_size=2",
            "--num_workers=0",
            "--save_freq=2",
            "--log_freq=1",
            f"--output_dir={out}",
        ],
        cwd=tmp_path,
    )
    saved = out / "checkpoints" / "last" / "pretrained_model"
    assert "latent_loss:" in first.stdout + first.stderr  # LeRobot logs the policy's loss terms
    # resuming reloads the checkpoint (the artifact is not read again) and keeps the latent loss on
    resumed = run_cli(
        [
            "lerobot-train",
            f"--config_path={saved / 'train_config.json'}",
            "--resume=true",
            "--steps=3",
            "--log_freq=1",
        ],
        cwd=tmp_path,
    )
    log = resumed.stdout + resumed.stderr
    assert "step:3 " in log and "latent_loss:" in log.split("step:3 ")[1].splitlines()[0]
    cfg = json.loads((saved / "config.json").read_text())
    assert cfg["core"]["chunk_size"] == 4 and cfg["vlm_config"] is not None
    # what stage 2 learned from is logged and kept in the checkpoint's config
    assert cfg["stage2"]["supervision"] == "latent_and_actions" and cfg["stage2"]["artifact"] == str(artifact_dir)
    assert f"hlrp: core from stage-2 artifact {artifact_dir} (supervision latent_and_actions" in first.stderr
    # the checkpoint loads without the artifact or the LAQ (evaluation and rollout machines need neither)
    from lerobot.policies import get_policy_class

    moved = tmp_path / "gone"
    artifact_dir.rename(moved)
    try:
        policy = get_policy_class("hlrp").from_pretrained(saved)
        assert not policy._laq
    finally:
        moved.rename(artifact_dir)


# ----- latent-only stage 2 ------------------------------------------------------------------------------------
def latent_only_config(gt_dataset: Path, laq: Path, out: Path, **overrides):
    from lerobot_policy_hlrp.commands.train_trunk import TrunkTrainConfig

    fields = dict(
        datasets=[TrunkDatasetConfig(repo_id="local/twin_demo", root=str(gt_dataset), cameras=["front"])],
        # no adapter entry: reading a single action would fail ("does not cover it")
        adapter=ActionAdapterConfig(target_dim=8, entries=[]),
        laq_path=str(laq), core=tiny_core_config(), load_vlm_weights=False, use_actions=False, steps=2,
        batch_size=4, num_workers=0, log_freq=1, save_freq=2, output_dir=out,
    )  # fmt: skip
    return TrunkTrainConfig(**{**fields, **overrides})


def test_latent_only_stage2_reads_no_action_and_stage3_reports_it(gt_dataset, tiny_laq_dir, tmp_path, caplog):
    from lerobot_policy_hlrp.commands.train_trunk import train

    with pytest.raises(ValueError, match="does not cover it"):  # the same corpus with actions needs the adapter
        train(latent_only_config(gt_dataset, tiny_laq_dir, tmp_path / "with", use_actions=True))
    result = train(latent_only_config(gt_dataset, tiny_laq_dir, tmp_path / "latent"))
    assert [sorted(k for k in row if k not in ("step", "samples_per_s", "label_s", "label_share", "loss"))
            for row in result["history"]] == [["latent_flow"], ["latent_flow"]]  # fmt: skip
    manifest = read_manifest(tmp_path / "latent" / "artifact")
    assert (manifest["supervision"], manifest["mode"]) == ("latent_only", "multitask")
    # stage 3 takes the artifact's record into its config and logs it
    caplog.set_level("INFO")
    policy = hlrp_policy(gt_dataset, init_mode="artifact", stage2_artifact=str(tmp_path / "latent" / "artifact"),
                         n_action_steps=2)  # fmt: skip
    assert policy.config.stage2["supervision"] == "latent_only" and policy.config.stage2["step"] == 2
    assert policy.config.stage2["laq_sha256"] == laq_checkpoint_hash(tiny_laq_dir)
    assert "(supervision latent_only, mode multitask, step 2" in caplog.text
    assert hlrp_policy(gt_dataset, init_mode="scratch", core=tiny_core_config(), load_vlm_weights=False,
                       n_action_steps=2).config.stage2 is None  # fmt: skip


def test_train_trunk_started_again_does_nothing_resumes_with_the_flag_or_refuses(
    gt_dataset, tiny_laq_dir, tmp_path, capsys
):
    from lerobot_policy_hlrp.commands.train_trunk import train

    out = tmp_path / "run"
    cfg = latent_only_config(gt_dataset, tiny_laq_dir, out)
    train(cfg)
    before = mtimes(out)
    capsys.readouterr()
    assert train(cfg)["already_trained"] and capsys.readouterr().out == nothing_to_do(out, "2 steps")
    with pytest.raises(OutputRefused, match=r"\(lr: saved 0\.0001, now 0\.001\): pass --resume=true to continue"):
        train(latent_only_config(gt_dataset, tiny_laq_dir, out, lr=1e-3))
    wider = latent_only_config(gt_dataset, tiny_laq_dir, out, core=tiny_core_config(head_hidden=64))
    with pytest.raises(OutputRefused, match=r"\(core\.head_hidden: saved 32, now 64\): choose another --output_dir"):
        train(wider)
    assert mtimes(out) == before
    # as if killed after its last checkpoint: the same command again names --resume=true, which finishes the run
    (out / RUN_FINISHED).unlink()
    with pytest.raises(OutputRefused, match="holds an unfinished run of these settings: pass --resume=true"):
        train(cfg)
    train(dataclasses.replace(cfg, resume=True))
    assert train(cfg)["already_trained"]


def test_latent_only_stage2_refuses_a_laq_of_another_code_shape(gt_dataset, tmp_path):
    from lerobot_policy_hlrp.commands.train_trunk import train

    LAQ(dataclasses.replace(TINY_LAQ, quant_dim=4)).save_pretrained(tmp_path / "laq_4")  # 1 x 4 codes, trunk: 8
    message = r"core\.latent_dim \(8\) must be the LAQ's code_seq_len x quant_dim \(1 x 4 = 4\) from .*laq_4/config"
    with pytest.raises(ValueError, match=message):
        train(latent_only_config(gt_dataset, tmp_path / "laq_4", tmp_path / "out"))
    LAQ(dataclasses.replace(TINY_LAQ, code_seq_len=2, quant_dim=4)).save_pretrained(tmp_path / "laq_2x4")  # 2 x 4
    with pytest.raises(ValueError, match=r"core\.code_seq_len \(1\) must be the LAQ's code_seq_len \(2\) from "):
        train(latent_only_config(gt_dataset, tmp_path / "laq_2x4", tmp_path / "out"))
    assert not (tmp_path / "out" / "checkpoints").exists()


def test_stage3_refuses_an_artifact_made_without_the_laq_it_names(gt_dataset, tmp_path):
    laq_folder = tmp_path / "laq"
    torch.manual_seed(0)
    LAQ(TINY_LAQ).save_pretrained(laq_folder)
    laq = {"folder": str(laq_folder), "sha256": laq_checkpoint_hash(laq_folder), "config": {}}
    save_artifact(tmp_path / "art", tiny_core(seed=5), mode="multitask", laq=laq, step=1)
    kwargs = dict(init_mode="artifact", stage2_artifact=str(tmp_path / "art"), n_action_steps=2, latent_loss_weight=0.5)
    policy = hlrp_policy(gt_dataset, **kwargs)  # no --policy.laq_path: the LAQ the manifest names
    assert policy.config.laq_path == str(laq_folder)
    torch.manual_seed(1)
    LAQ(TINY_LAQ).save_pretrained(laq_folder)  # the LAQ is retrained in place after stage 2
    with pytest.raises(ValueError, match=rf"{laq_folder}/model\.safetensors, sha256 .*{tmp_path}/art/manifest\.json"):
        hlrp_policy(gt_dataset, **kwargs)
    save_artifact(tmp_path / "actions_art", tiny_core(seed=5), mode="actions", laq={}, step=1)
    kwargs.update(stage2_artifact=str(tmp_path / "actions_art"), laq_path=str(laq_folder))
    with pytest.raises(ValueError, match=r"actions_art/manifest\.json\) was trained without a LAQ \(mode 'actions'\)"):
        hlrp_policy(gt_dataset, **kwargs)


def test_an_unfrozen_twin_core_trains_its_vision_tower_and_text_layers():
    """The twin configs' trunk (random weights, freeze_vision_encoder=false) learns whole, not as fixed features."""
    core = tiny_core(freeze_vision_encoder=False).train()
    before = {k: v.clone() for k, v in core.state_dict().items()}
    optimizer = torch.optim.AdamW([p for p in core.parameters() if p.requires_grad], lr=1e-3)
    ids, mask = tokens([TASK, TASK])
    out = core([torch.rand(2, 3, 48, 64)], ids, mask, vectors=torch.randn(2, 1, 8))
    out["latent_flow"].backward()
    optimizer.step()
    changed = {k for k, v in core.state_dict().items() if not torch.equal(v, before[k])}
    assert any(k.startswith("vlm.vision_model.") for k in changed)
    assert any(k.startswith("vlm.text_model.layers.0.") for k in changed)
    assert any(k.startswith("vlm.connector.") for k in changed)
