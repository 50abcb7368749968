"""Roll a trained segdepth checkpoint out in the twin and show what it saw.

Writes `policy_view.mp4` (front and wrist RGB, then the class ids and disparity the policy received, per
step) and `policy_channels.png` (the three stacked frames of ids and disparity at one step).

    python examples/segdepth_policy_view.py --policy outputs/demo/train/checkpoints/last/pretrained_model \
        --out outputs/demo --seed 1000
"""

from __future__ import annotations

import argparse
from collections import deque
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from lerobot_env_so101_twin.gym_env import SO101TwinEnv
from lerobot_env_so101_twin.visualize import colorize_segmentation, write_video


def upscale(image: np.ndarray, height: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((height * image.shape[1] // image.shape[0], height), 0))


def channel_tiles(segdepth: torch.Tensor, height: int) -> list[np.ndarray]:
    """(2, S, S) ids + disparity -> [colour ids, grey disparity] tiles `height` pixels tall."""
    ids = segdepth[0].round().long().numpy()
    disparity = segdepth[1].clamp(0, 255).byte().numpy()
    return [upscale(colorize_segmentation(ids), height), upscale(np.repeat(disparity[..., None], 3, -1), height)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", type=Path, required=True, help="a segdepth pretrained_model folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--task", default="LiftCube")
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--width", type=int, default=160)
    args = parser.parse_args()

    from lerobot.envs.utils import preprocess_observation
    from lerobot.policies import get_policy_class
    from lerobot.policies.factory import make_pre_post_processors
    from lerobot.utils.import_utils import register_third_party_plugins

    register_third_party_plugins()
    policy = get_policy_class("segdepth").from_pretrained(args.policy)
    policy.config.device = "cpu"
    pre, post = make_pre_post_processors(policy.config, pretrained_path=str(args.policy))
    cam = policy.config.camera
    env = SO101TwinEnv(
        task=args.task,
        cameras=(cam,),
        render_cameras=("front", cam),
        camera_height=args.height,
        camera_width=args.width,
        depth=True,
        segmentation=True,
    )
    obs, info = env.reset(seed=args.seed)
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

    video = write_video(frames, args.out / "policy_view.mp4", fps=30)
    snapshot = snapshot or list(seen)
    rows = [np.concatenate(channel_tiles(f, 168), axis=1) for f in snapshot]
    grid = Image.fromarray(np.concatenate(rows, axis=0))
    draw = ImageDraw.Draw(grid)
    for i in range(len(rows)):
        draw.text((4, 4 + 168 * i), f"t-{len(rows) - 1 - i}: ids | disparity", fill=(255, 255, 0))
    grid.save(args.out / "policy_channels.png")
    print(f"seed {args.seed}: {'success' if success else 'no success'} after {len(frames)} steps")
    print(f"wrote {video} and {args.out / 'policy_channels.png'}")


if __name__ == "__main__":
    main()
