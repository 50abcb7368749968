"""Roll a trained segdepth checkpoint out in the twin and show what it saw.

Writes `policy_view.mp4` (front and wrist RGB, then the class ids and disparity the policy received, per
step) and `policy_channels.png` (the three stacked frames of ids and disparity at one step).

    python examples/segdepth_policy_view.py --policy.path=outputs/demo/train/checkpoints/last/pretrained_model \
        --output_dir=outputs/demo --seed=1000
"""

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from lerobot.configs import parser
from PIL import Image, ImageDraw

from lerobot_env_so101_twin.env import SO101TwinEnv
from lerobot_env_so101_twin.visualize import colorize_segmentation, write_video
from so101_run_infra.checkpoint_ref import CheckpointRef
from so101_run_infra.cli import prepare_command_line


@dataclass
class PolicyViewConfig:
    # the segdepth checkpoint (--policy.path: its pretrained_model folder); required
    policy: CheckpointRef = field(default_factory=CheckpointRef)
    # where policy_view.mp4 and policy_channels.png go; required
    output_dir: Path | None = None
    # the twin task to roll out
    task: str = "LiftCube"
    # the episode's seed (the cube pose): the demo evaluates from 1000 on, poses never seen in training
    seed: int = 1000
    # the cameras' image height the policy's preprocessor receives, as in its recording
    height: int = 120
    # the cameras' image width, as in the recording
    width: int = 160
    # the twin's look: none, shifted or unseen (--env.appearance)
    appearance: str = "none"

    def __post_init__(self) -> None:
        self.policy.require()
        if self.output_dir is None:
            raise ValueError("--output_dir is required: where policy_view.mp4 and policy_channels.png go")


def upscale(image: np.ndarray, height: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((height * image.shape[1] // image.shape[0], height), 0))


def channel_tiles(segdepth: torch.Tensor, height: int) -> list[np.ndarray]:
    """(2, S, S) ids + disparity -> [colour ids, grey disparity] tiles `height` pixels tall."""
    ids = segdepth[0].round().long().numpy()
    disparity = segdepth[1].clamp(0, 255).byte().numpy()
    return [upscale(colorize_segmentation(ids), height), upscale(np.repeat(disparity[..., None], 3, -1), height)]


@parser.wrap()
def policy_view(cfg: PolicyViewConfig) -> bool:
    from lerobot.envs.utils import preprocess_observation
    from lerobot.policies import get_policy_class
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.utils.import_utils import register_third_party_plugins

    register_third_party_plugins()
    policy = get_policy_class("segdepth").from_pretrained(cfg.policy.path)
    policy.config.device = "cpu"
    pre, post = make_pre_post_processors(policy.config, pretrained_path=str(cfg.policy.path))
    cam = policy.config.camera
    env = SO101TwinEnv(
        task=cfg.task,
        cameras=(cam,),
        render_cameras=("front", cam),
        camera_height=cfg.height,
        camera_width=cfg.width,
        # only what the checkpoint's source reads: from RGB, the twin's ground truth is not rendered at all
        depth="depth" in policy.config.perception_record.reads,
        segmentation="segmentation" in policy.config.perception_record.reads,
        appearance=cfg.appearance,
    )
    obs, info = env.reset(seed=cfg.seed)
    policy.reset()
    seen: deque[torch.Tensor] = deque(maxlen=policy.config.frame_stack)
    frames, snapshot, success = [], None, False
    for step in range(env._max_episode_steps):
        batch = preprocess_observation(obs)
        batch["task"] = [env.task_description]
        batch = pre(batch)
        segdepth = batch["observation.segdepth"][0].cpu()
        if not seen:  # as the policy's own buffer: an episode starts with copies of its first frame
            seen.extend([segdepth] * policy.config.frame_stack)
        else:
            seen.append(segdepth)
        with torch.inference_mode():
            action = post(policy.select_action(batch))
        rgb = env.render()
        frames.append(np.concatenate([rgb, *channel_tiles(segdepth, rgb.shape[0])], axis=1))
        if step == 45:
            snapshot = list(seen)
        obs, _, terminated, truncated, info = env.step(action[0].numpy())
        success = success or bool(info["is_success"])
        if terminated or truncated:
            break
    env.close()

    video = write_video(frames, cfg.output_dir / "policy_view.mp4", fps=30)
    snapshot = snapshot or list(seen)
    rows = [np.concatenate(channel_tiles(f, 168), axis=1) for f in snapshot]
    grid = Image.fromarray(np.concatenate(rows, axis=0))
    draw = ImageDraw.Draw(grid)
    for i in range(len(rows)):
        draw.text((4, 4 + 168 * i), f"t-{len(rows) - 1 - i}: ids | disparity", fill=(255, 255, 0))
    grid.save(cfg.output_dir / "policy_channels.png")
    print(f"seed {cfg.seed} ({cfg.appearance}): {'success' if success else 'no success'} after {len(frames)} steps")
    print(f"wrote {video} and {cfg.output_dir / 'policy_channels.png'}")
    return success


def main() -> None:
    prepare_command_line()
    policy_view()


if __name__ == "__main__":
    main()
