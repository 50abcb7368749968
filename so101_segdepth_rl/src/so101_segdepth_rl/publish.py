"""segdepth-rl-train's publishing: the last checkpoint's policy folder pushed to the Hub with its model card."""

from pathlib import Path

from lerobot.configs import PreTrainedConfig

from lerobot_policy_segdepth import SegDepthConfig
from so101_run_infra.hub import HubPushConfig, model_card, push_folder

from .config import RLTrainConfig


def policy_card(cfg: RLTrainConfig, policy_config: SegDepthConfig, history: list[dict]):
    """The model card of the pushed checkpoint: LeRobot's layout, with the twin, the command and the last evaluation."""
    pc, env = policy_config, cfg.env
    data = [
        f"the SO-101 MuJoCo twin (lerobot_env_so101_twin), task {env.task}, {env.reward_type} reward, "
        f"{cfg.frames} env frames over {cfg.num_envs} envs, {env.observation_height}x{env.observation_width} render"
    ]
    if cfg.demos.repo_id:
        data.append(
            f"recorded demonstrations `{cfg.demos.repo_id}` ({cfg.demos.root}), {cfg.demos.share:.0%} of every batch"
        )
    last = history[-1] if history else {}
    result = {f"{k} (own evaluation, {last.get('episodes', '?')} episodes)": v for k, v in last.items()
              if k in ("success_rate", "return")}  # fmt: skip
    result.update({k: last[k] for k in ("frames", "updates", "wall_min") if k in last})
    flags = "--env.depth=true --env.segmentation=true"
    return model_card(
        model_name=pc.repo_id,
        model_type=pc.type,
        summary=f"A `segdepth` policy (DrQ-v2's actor on class ids + disparity of the {pc.camera} camera, "
        f"perception_source={pc.perception_source}) trained by reinforcement learning in the SO-101 twin with "
        "`segdepth-rl-train`.",
        data=data,
        result=result,
        hub=HubPushConfig(True, pc.repo_id, pc.private, pc.tags, pc.license or "apache-2.0"),
        datasets=[cfg.demos.repo_id] if cfg.demos.repo_id else None,
        base_model=str(cfg.policy_path) if cfg.policy_path else None,
        details={"Trainer": "segdepth-rl-train (DrQ-v2)", "Seed": cfg.seed, "Action mode": pc.action_mode},
        features={k: (f.type.value, tuple(f.shape)) for k, f in {**pc.input_features, **pc.output_features}.items()},
        usage=f"lerobot-eval --policy.path={pc.repo_id} --env.type=so101_twin --env.task={env.task} {flags}",
    )


def push_policy(cfg: RLTrainConfig, result: dict) -> str:
    """Push the last checkpoint's pretrained_model folder (policy, processors, card) to --policy.repo_id."""
    folder = Path(result["checkpoint"]).resolve()
    policy_config = PreTrainedConfig.from_pretrained(folder)
    policy_config.repo_id, policy_config.private = cfg.policy.repo_id, cfg.policy.private
    policy_config.tags, policy_config.license = cfg.policy.tags, cfg.policy.license
    card = policy_card(cfg, policy_config, result["history"])
    hub = HubPushConfig(True, cfg.policy.repo_id, cfg.policy.private)
    return push_folder(folder, hub, card, "Upload policy weights, processors and readme (segdepth-rl-train)")
