"""Every file in configs/ parses with its command's config class, so each README figure's run can be reproduced."""

import sys
from pathlib import Path

import draccus
import pytest
from lerobot.configs.train import TrainPipelineConfig
from lerobot.utils.import_utils import register_third_party_plugins

from lerobot_env_so101_twin.commands.record import TwinRecordConfig
from lerobot_policy_hlrp.commands.train_trunk import TrunkTrainConfig
from lerobot_policy_hlrp.pretrain.laq_config import LAQTrainConfig
from lerobot_policy_segvla.commands.pretrain_tower import TowerPretrainConfig
from so101_commands.submit import SubmitConfig
from so101_devtools.demo import DemoConfig
from so101_segdepth_rl.config import RLTrainConfig
from so101_segmenter.configs import TrainConfig

register_third_party_plugins()  # --policy.type=imf / hlrp in the lerobot-train configs

ROOT = Path(__file__).resolve().parent.parent


def _benchmark_config(script: str, name: str) -> type:
    """A benchmark script's config class (benchmarks/ is a folder of scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"benchmarks_{script}", ROOT / "benchmarks" / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


CONFIGS = {
    "demo.yaml": DemoConfig,
    "demo_long.yaml": DemoConfig,
    "segmenter_train.yaml": TrainConfig,
    "rl_reach.yaml": RLTrainConfig,
    "rl_lift_gpu.yaml": RLTrainConfig,
    "rl_lift_finetune.yaml": RLTrainConfig,
    "rl_lift_finetune_awr.yaml": RLTrainConfig,
    "rl_lift_finetune_critic.yaml": RLTrainConfig,
    "twin_liftcube_rgb.yaml": TwinRecordConfig,
    "imf_twin_cnn.yaml": TrainPipelineConfig,
    "diffusion_twin.yaml": TrainPipelineConfig,
    "imf_siglip2_pv96.yaml": TrainPipelineConfig,
    "imf_siglip2_pv192.yaml": TrainPipelineConfig,
    "hlrp_twin_pretrain_data.yaml": TwinRecordConfig,
    "hlrp_twin_finetune_data.yaml": TwinRecordConfig,
    "hlrp_laq_twin.yaml": LAQTrainConfig,
    "hlrp_laq_oxe.yaml": LAQTrainConfig,
    "hlrp_trunk_twin.yaml": TrunkTrainConfig,
    "hlrp_trunk_twin_flow.yaml": TrunkTrainConfig,
    "hlrp_finetune_twin_flow.yaml": TrainPipelineConfig,
    "hlrp_trunk_oxe.yaml": TrunkTrainConfig,
    "hlrp_finetune_twin.yaml": TrainPipelineConfig,
    "hlrp_scratch_twin.yaml": TrainPipelineConfig,
    "hlrp_finetune_so101.yaml": TrainPipelineConfig,
    "hlrp_corpus_lift_plain.yaml": TwinRecordConfig,
    "hlrp_corpus_lift_clean.yaml": TwinRecordConfig,
    "hlrp_corpus_lift_shifted.yaml": TwinRecordConfig,
    "hlrp_corpus_reach_plain.yaml": TwinRecordConfig,
    "hlrp_corpus_reach_shifted.yaml": TwinRecordConfig,
    "hlrp_laq_corpus.yaml": LAQTrainConfig,
    "hlrp_laq_corpus_seg.yaml": LAQTrainConfig,
    "hlrp_trunk_corpus_latent.yaml": TrunkTrainConfig,
    "hlrp_trunk_corpus_actions.yaml": TrunkTrainConfig,
    "hlrp_finetune_corpus.yaml": TrainPipelineConfig,
    "hlrp_scratch_corpus.yaml": TrainPipelineConfig,
    "cluster_lrz_x100.yaml": SubmitConfig,
    "cluster_mcml_x100.yaml": SubmitConfig,
    "cluster_local.yaml": SubmitConfig,
    "segvla_twin_record.yaml": TwinRecordConfig,
    "segvla_twin.yaml": TrainPipelineConfig,
    "smolvla_twin.yaml": TrainPipelineConfig,
    "segmenter_twin.yaml": TrainConfig,
    "segmenter_robust.yaml": TrainConfig,
    "vision_tower_twin.yaml": TowerPretrainConfig,
    "robust_twin_record.yaml": TwinRecordConfig,
    "own_scene/record_look.yaml": TwinRecordConfig,
    "arm/identify_record.yaml": TwinRecordConfig,
    "arm/conditions_segdepth_gt.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/conditions_imf.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/conditions_imf_delay.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/conditions_rgb_shipped.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/conditions_rgb_adapted.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/recipes_segdepth_gt.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/recipes_15s_segdepth_gt.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/hidden_arm_segdepth_gt.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/tuning/lead_segdepth_gt.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/tuning/rl_varied_segdepth_gt.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/tuning/rl_varied_s11.yaml": RLTrainConfig,
    "arm/tuning/rl_varied_plain_segdepth_gt.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/tuning/rl_varied_look_s11.yaml": RLTrainConfig,
    "arm/tuning/rl_varied_look_segdepth_gt.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/tuning/chained_segdepth_gt.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/tuning/history_segdepth_gt.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/tuning/lead_scale_segdepth_gt.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/tuning/dagger_record_s11.yaml": TwinRecordConfig,
    "arm/tuning/dagger_segdepth_gt.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/tuning/dagger_edge_record_s11.yaml": TwinRecordConfig,
    "arm/tuning/dagger_edge_segdepth_gt.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/tuning/predictive_record_s11.yaml": TwinRecordConfig,
    "arm/tuning/predictive_mix_record_s11.yaml": TwinRecordConfig,
    "arm/tuning/predictive_segdepth_gt.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/tuning/clearance_record_s11.yaml": TwinRecordConfig,
    "arm/tuning/clearance_predictive_record_s11.yaml": TwinRecordConfig,
    "arm/tuning/clearance_segdepth_gt.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/tuning/cube_sizes_record_s11.yaml": TwinRecordConfig,
    "arm/tuning/cube_sizes_segdepth_gt.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/tuning/step_from_sent_segdepth_gt.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/tuning/step_from_sent_wide_segdepth_gt.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/tuning/step_from_sent_steps_segdepth_gt.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/tuning/step_from_sent_ahead_segdepth_gt.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/step_from_sent_segdepth_gt.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/tuning/cube_sizes_sent_segdepth_gt.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/tuning/clearance3_record_s11.yaml": TwinRecordConfig,
    "arm/tuning/clearance3_sent_segdepth_gt.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/tuning/step_scale_segdepth_gt.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/tuning/step_scale_reading_segdepth_gt.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/tuning/cube_sizes_scaled_segdepth_gt.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/tuning/cube_sizes_ideal_segdepth_gt.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/tuning/clearance3_scaled_segdepth_gt.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/tuning/clearance3_ideal_segdepth_gt.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/tuning/scale_record_s11.yaml": TwinRecordConfig,
    "arm/tuning/scale_scaled_segdepth_gt.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/tuning/scale_ideal_segdepth_gt.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/tuning/sized_clearance_record_s11.yaml": TwinRecordConfig,
    "arm/tuning/sized_clearance_scaled_segdepth_gt.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/tuning/sized_clearance_ideal_segdepth_gt.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/tuning/step_scale_5hz_segdepth_gt.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/tuning/step_from_sent_latency_segdepth_gt.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/step_from_sent_factors_segdepth_gt.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/cube_factors_segdepth_gt.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/step_scale_5hz_segdepth_gt.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/step_scale_10hz_segdepth_gt.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/step_scale_rgb_adapted.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/step_scale_5hz_rgb_adapted.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/step_scale_15hz_rgb_adapted.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/step_from_sent_100ms_segdepth_gt.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "arm/identified_training_segdepth_gt.yaml": _benchmark_config("arm_conditions", "ArmConditionsConfig"),
    "own_scene/record_family.yaml": TwinRecordConfig,
    "own_scene/segdepth_rgbonly.yaml": TrainPipelineConfig,
    "own_scene/segmenter_adapt.yaml": TrainConfig,
    **{
        f"robust_twin/{name}.yaml": TrainPipelineConfig
        for name in (
            "segvla",
            "segvla_gt",
            "segvla_frozen",
            "smolvla_frozen",
            "smolvla",
            "act",
            "imf",
            "segdepth",
            "segdepth_rgb",
            "segdepth_seg",
            "segdepth_rgbonly",
        )
        + tuple(f"tuning/{arm}" for arm in ("segvla_tokens", "segvla_beside", "segvla_instead"))
        + ("tuning/smolvla", "tuning/smolvla_aug", "curve/segvla", "curve/smolvla", "real/segvla", "real/smolvla")
    },
}


def test_every_config_file_has_a_command():
    found = [str(p.relative_to(ROOT / "configs")) for p in (ROOT / "configs").rglob("*.yaml")]
    assert sorted(found) == sorted(CONFIGS)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_parses_and_flags_override_it(name):
    cls = CONFIGS[name]
    cfg = draccus.parse(cls, config_path=ROOT / "configs" / name, args=[])
    assert isinstance(cfg, cls)
    if cls is DemoConfig:
        assert cfg.record.dataset.repo_id and cfg.record.robot.depth and cfg.record.robot.segmentation
        override = draccus.parse(cls, config_path=ROOT / "configs" / name, args=["--train.steps=7"])
        assert override.train.steps == 7 and override.record.dataset.num_episodes == cfg.record.dataset.num_episodes
    if cls is RLTrainConfig:
        # one env flag must not reset the others to so101_twin's defaults (LiftCube, 640x480)
        override = draccus.parse(cls, config_path=ROOT / "configs" / name, args=["--env.observation_height=40"])
        assert override.env.observation_height == 40 and override.env.task == cfg.env.task
        assert override.policy.image_size == cfg.policy.image_size
    if cls is TrainPipelineConfig and cfg.policy.type in ("imf", "diffusion"):  # lerobot-train --config_path=...
        assert cfg.dataset.repo_id
        override = draccus.parse(cls, config_path=ROOT / "configs" / name, args=["--policy.horizon=8"])
        assert override.policy.horizon == 8 and override.policy.n_obs_steps == cfg.policy.n_obs_steps
    if cls is TrainPipelineConfig and cfg.policy.type == "hlrp":
        override = draccus.parse(cls, config_path=ROOT / "configs" / name, args=["--policy.n_action_steps=4"])
        assert override.policy.n_action_steps == 4 and override.policy.core == cfg.policy.core
    if cls is TrunkTrainConfig and cfg.use_actions:  # the adapter covers every dataset, at the core's action size
        assert {d.repo_id for d in cfg.datasets} == {e.dataset for e in cfg.adapter.entries}
        assert cfg.adapter.target_dim == cfg.core.action_dim
    if name.startswith("hlrp_") and name.endswith("_oxe.yaml"):  # the seed's real sizes
        sizes = cfg.model if cls is LAQTrainConfig else cfg.core
        assert (sizes.codebook_size, sizes.code_seq_len) == (2048, 1)
    if name.startswith("imf_siglip2"):  # seed 003's two experiments differ only in the per-view size
        assert cfg.policy.siglip_model == "google/siglip2-base-patch16-256" and cfg.steps == 50_000
        assert cfg.policy.per_view_dim in (96, 192) and cfg.policy.condition_dim == 384 == cfg.policy.n_emb
    if name.startswith("robust_twin/"):  # one recording and one look for every arm of the comparison
        assert cfg.dataset.repo_id == "local/so101_twin_liftcube_shifted"
        record = draccus.parse(TwinRecordConfig, config_path=ROOT / "configs" / "robust_twin_record.yaml", args=[])
        assert record.robot.appearance == "shifted" and record.dataset.repo_id == cfg.dataset.repo_id
        # the recording also holds depth and segmentation maps: unnamed inputs would make them cameras
        assert cfg.policy.input_features, f"{name}: name the policy's input_features"
        if cfg.policy.type != "segdepth":  # the RGB arms see the RGB cameras only
            maps = [k for k in cfg.policy.input_features if k.endswith(("_depth", "_segmentation"))]
            assert not maps, f"{name}: an RGB arm reads {maps}"


def demo_config(monkeypatch, *args: str):
    """scripts/demo.py's config from the command line `args`, parsed as its main parses it."""
    from so101_devtools.demo import config_from_command_line

    monkeypatch.setattr(sys, "argv", ["demo.py", *args])
    return config_from_command_line()


def test_demo_config_with_a_bad_value_is_a_clear_error(monkeypatch, capsys):
    with pytest.raises(SystemExit):
        demo_config(monkeypatch, "--config_path=configs/demo.yaml", "--record.teleop.lift_height=0.02")
    assert "--teleop.lift_height=0.02 m cannot solve LiftCube" in capsys.readouterr().err


def test_demo_amp_follows_the_cpus_amx_flag(tmp_path, monkeypatch, capsys):
    from so101_devtools.demo import TrainStage, cpu_has_amx, uses_amp

    amx = tmp_path / "amx"
    amx.write_text("processor\t: 0\nflags\t\t: fpu avx512f amx_tile amx_bf16 amx_int8\n\nprocessor\t: 1\n")
    plain = tmp_path / "plain"
    plain.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f amx_tile\n")  # AMX tiles without bf16 do not count
    assert cpu_has_amx(amx) and not cpu_has_amx(plain) and not cpu_has_amx(tmp_path / "missing")
    assert uses_amp(TrainStage(amp="true")) and not uses_amp(TrainStage(amp="false"))
    assert uses_amp(TrainStage(amp="auto")) == cpu_has_amx()

    with pytest.raises(SystemExit):
        demo_config(monkeypatch, "--config_path=configs/demo.yaml", "--train.amp=bf16")
    assert "train.amp must be auto, true or false, got 'bf16'" in capsys.readouterr().err
    assert demo_config(monkeypatch, "--train.amp=true").train.amp == "true"  # configs/demo.yaml by default
    assert demo_config(monkeypatch, "--train.amp=false").train.amp == "false"
    assert demo_config(monkeypatch).train.steps == 2000  # configs/demo.yaml's, not TrainStage's 1300


def test_segvla_twin_arms_differ_only_in_the_cues():
    import dataclasses

    cues = draccus.parse(TrainPipelineConfig, config_path=ROOT / "configs" / "segvla_twin.yaml", args=[])
    plain = draccus.parse(TrainPipelineConfig, config_path=ROOT / "configs" / "smolvla_twin.yaml", args=[])
    assert cues.policy.segmentation_feature_map and not plain.policy.segmentation_feature_map
    differ = {
        f.name for f in dataclasses.fields(cues.policy) if getattr(cues.policy, f.name) != getattr(plain.policy, f.name)
    }
    assert differ and all(name.startswith("segmentation_") or name == "perception_source" for name in differ), differ
    assert {f.name for f in dataclasses.fields(cues) if getattr(cues, f.name) != getattr(plain, f.name)} == {
        "policy",
        "output_dir",
    }
    record = draccus.parse(TwinRecordConfig, config_path=ROOT / "configs" / "segvla_twin_record.yaml", args=[])
    assert str(record.dataset.root) == cues.dataset.root and record.robot.segmentation


HLRP_CORPUS = [
    f"hlrp_corpus_{n}.yaml" for n in ("lift_plain", "lift_clean", "lift_shifted", "reach_plain", "reach_shifted")
]


def parsed(name: str):
    return draccus.parse(CONFIGS[name], config_path=ROOT / "configs" / name, args=[])


def test_hlrp_corpus_is_varied_and_its_poses_disjoint_from_the_labelled_and_evaluated_ones():
    corpus = [parsed(n) for n in HLRP_CORPUS]
    labelled = parsed("hlrp_twin_finetune_data.yaml")
    assert {c.robot.task for c in corpus} == {"LiftCube", "ReachCube"}
    assert {c.robot.action_noise_std for c in corpus} == {0.0, 0.5, 1.0}  # the DART levels
    assert {c.robot.appearance for c in corpus} == {"none", "shifted"} and all(c.robot.segmentation for c in corpus)
    assert labelled.robot.task == "LiftCube" and 10 <= labelled.dataset.num_episodes <= 20
    # episode k of a recording is seed + k; lerobot-eval --seed=1000 takes 1000, 1001, ...
    seeds = [set(range(c.robot.seed, c.robot.seed + c.dataset.num_episodes)) for c in [*corpus, labelled]]
    seeds.append(set(range(1000, 1020)))
    assert sum(len(s) for s in seeds) == len(set().union(*seeds))
    assert len({c.dataset.repo_id for c in corpus}) == len(corpus)  # the adapter tells datasets apart by repo_id


def test_hlrp_comparison_stages_read_the_corpus_and_differ_only_in_what_they_compare():
    import dataclasses

    corpus = {c.dataset.repo_id: str(c.dataset.root) for c in map(parsed, HLRP_CORPUS)}
    plain, seg = parsed("hlrp_laq_corpus.yaml"), parsed("hlrp_laq_corpus_seg.yaml")
    latent, actions = parsed("hlrp_trunk_corpus_latent.yaml"), parsed("hlrp_trunk_corpus_actions.yaml")
    for cfg in (plain, seg, latent, actions):
        assert {d.repo_id: str(d.root) for d in cfg.datasets} == corpus
    differ = {f.name for f in dataclasses.fields(plain) if getattr(plain, f.name) != getattr(seg, f.name)}
    assert differ == {"loss_weighting", "segmentation", "output_dir"} and seg.loss_weighting == "segmentation"
    # the plain LAQ's held-out weighted MSE uses the same class weights: the two compare on it
    assert plain.segmentation.class_weights == seg.segmentation.class_weights
    differ = {f.name for f in dataclasses.fields(latent) if getattr(latent, f.name) != getattr(actions, f.name)}
    assert differ == {"use_actions", "adapter", "output_dir"} and not latent.use_actions and actions.use_actions
    assert latent.laq_path == str(plain.output_dir / "laq")
    finetune, scratch = parsed("hlrp_finetune_corpus.yaml"), parsed("hlrp_scratch_corpus.yaml")
    assert scratch.policy.core == latent.core  # the no-stage-2 arm builds the same core
    for field in ("dataset", "steps", "batch_size", "seed"):
        assert getattr(finetune, field) == getattr(scratch, field), field
    for field in ("optimizer_lr", "scheduler_warmup_steps", "scheduler_decay_steps", "cameras", "n_action_steps"):
        assert getattr(finetune.policy, field) == getattr(scratch.policy, field), field
    assert finetune.dataset.root == str(parsed("hlrp_twin_finetune_data.yaml").dataset.root).replace(
        "outputs/hlrp/twin_finetune_data", "outputs/hlrp_twin/data/labelled"
    )


TWIN_TRUNKS = [
    n
    for n, cls in CONFIGS.items()
    if cls in (TrunkTrainConfig, TrainPipelineConfig) and n.startswith("hlrp_") and ("twin" in n or "corpus" in n)
]


@pytest.mark.parametrize("name", TWIN_TRUNKS)
def test_hlrp_twin_trunks_are_trained_whole(name):
    """At twin scale the trunk has random weights: a frozen tower would give the heads random features."""
    cfg = parsed(name)
    if isinstance(cfg, TrainPipelineConfig) and cfg.policy.init_mode == "artifact":
        assert "hlrp_finetune" in name  # its core (and this flag) come from the stage-2 artifact
        return
    core = cfg.policy.core if isinstance(cfg, TrainPipelineConfig) else cfg.core
    assert core.freeze_vision_encoder is False and core.num_vlm_layers == 4
    assert (cfg.policy.load_vlm_weights if isinstance(cfg, TrainPipelineConfig) else cfg.load_vlm_weights) is True
