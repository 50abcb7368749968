"""Convert a DrQ-v2 snapshot ({"encoder": ..., "actor": ...}, seed 002 "Loading the policy") into a segdepth
checkpoint that `lerobot-eval --policy.path=...` and `lerobot-rollout --policy.path=...` load.

    segdepth-convert-drqv2 --snapshot 1200000_snapshot.pt --output-dir outputs/segdepth_from_drqv2

Network sizes come from the snapshot's tensors. What a snapshot does not record is asked for: how its
6 input channels were laid out (seed 002: 3 frames of [ids/255, disparity/255], i.e. --id-encoding scaled),
and the joint-delta scale and action repeat it was trained with.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from lerobot.configs import FeatureType, PolicyFeature
from lerobot.utils.constants import ACTION, OBS_STATE

from so101_core.atomic import atomic_folder

from .configuration_segdepth import SegDepthConfig
from .modeling_segdepth import SegDepthPolicy
from .processor_segdepth import make_segdepth_pre_post_processors


def _state_dict(snapshot: dict, part: str, path: Path) -> dict[str, torch.Tensor]:
    if part not in snapshot:
        raise KeyError(f"{path}: no '{part}' entry; a DrQ-v2 snapshot has 'encoder' and 'actor', got {list(snapshot)}")
    value = snapshot[part]
    return value.state_dict() if isinstance(value, torch.nn.Module) else dict(value)


def config_from_snapshot(
    encoder: dict[str, torch.Tensor],
    actor: dict[str, torch.Tensor],
    *,
    frame_stack: int,
    id_encoding: str,
    camera: str,
    image_size: int,
    action_scale: list[float],
    action_repeat: int,
) -> SegDepthConfig:
    needed = {"convnet.0.weight": encoder, "trunk.0.weight": actor, "policy.0.weight": actor, "policy.4.weight": actor}
    missing = [key for key, sd in needed.items() if key not in sd]
    if missing:
        raise KeyError(f"not a DrQ-v2 encoder/actor: missing {missing}")
    in_channels, channels = encoder["convnet.0.weight"].shape[1], encoder["convnet.0.weight"].shape[0]
    feature_dim = actor["trunk.0.weight"].shape[0]
    state_dim = actor["policy.0.weight"].shape[1] - feature_dim
    if state_dim not in (0, 6):
        raise ValueError(f"the actor takes {state_dim} extra inputs beside its features; segdepth supports 0 or 6")
    if actor["policy.4.weight"].shape[0] != 6:
        raise ValueError(f"the actor outputs {actor['policy.4.weight'].shape[0]} actions; the SO-101 needs 6")
    features = {
        f"observation.images.{camera}_depth": PolicyFeature(FeatureType.VISUAL, (1, image_size, image_size)),
        f"observation.images.{camera}_segmentation": PolicyFeature(FeatureType.VISUAL, (1, image_size, image_size)),
    }
    if state_dim:
        features[OBS_STATE] = PolicyFeature(FeatureType.STATE, (6,))
    config = SegDepthConfig(
        camera=camera,
        image_size=image_size,
        frame_stack=frame_stack,
        id_encoding=id_encoding,
        use_state=bool(state_dim),
        encoder_channels=channels,
        feature_dim=feature_dim,
        hidden_dim=actor["policy.0.weight"].shape[0],
        action_scale=action_scale,
        action_repeat=action_repeat,
        input_features=features,
        output_features={ACTION: PolicyFeature(FeatureType.ACTION, (6,))},
        device="cpu",
        push_to_hub=False,
    )
    if frame_stack * (config.id_channels + 1) != in_channels:
        raise ValueError(
            f"the encoder takes {in_channels} channels, but frame_stack={frame_stack} with id_encoding={id_encoding!r} "
            f"gives {frame_stack * (config.id_channels + 1)}"
        )
    return config


def convert(snapshot_path: Path, output_dir: Path, dataset_stats: dict | None = None, **options) -> SegDepthPolicy:
    snapshot = torch.load(snapshot_path, map_location="cpu", weights_only=False)
    encoder, actor = _state_dict(snapshot, "encoder", snapshot_path), _state_dict(snapshot, "actor", snapshot_path)
    config = config_from_snapshot(encoder, actor, **options)
    if config.use_state and not dataset_stats:
        raise ValueError("this actor reads observation.state: pass --dataset-root to take its normalisation stats")
    policy = SegDepthPolicy(config)
    if policy.encoder.repr_dim != actor["trunk.0.weight"].shape[1]:
        raise ValueError(
            f"the actor expects {actor['trunk.0.weight'].shape[1]} encoder features, the encoder gives "
            f"{policy.encoder.repr_dim} at image_size={config.image_size}: was it trained at another size?"
        )
    policy.encoder.load_state_dict(encoder, strict=True)
    policy.actor.load_state_dict({k: v for k, v in actor.items() if k.startswith(("trunk.", "policy."))}, strict=True)
    pre, post = make_segdepth_pre_post_processors(config, dataset_stats=dataset_stats)
    with atomic_folder(output_dir) as staging:  # the checkpoint appears whole or not at all
        policy.save_pretrained(staging)
        pre.save_pretrained(staging)
        post.save_pretrained(staging)
    return policy


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--snapshot", type=Path, required=True, help="a torch file with 'encoder' and 'actor'")
    parser.add_argument("--output-dir", type=Path, required=True, help="where the segdepth checkpoint goes")
    parser.add_argument("--frame-stack", type=int, default=3)
    parser.add_argument("--id-encoding", choices=["scaled", "onehot", "embedding"], default="scaled")
    parser.add_argument("--camera", default="wrist")
    parser.add_argument("--image-size", type=int, default=84)
    parser.add_argument("--action-scale", type=float, nargs=6, default=[4.0, 4.0, 4.0, 4.0, 4.0, 15.0])
    parser.add_argument("--action-repeat", type=int, default=2, help="seed 002 trained with action_repeat=2")
    parser.add_argument("--dataset-root", type=Path, help="a LeRobot dataset whose stats normalise the state")
    args = parser.parse_args(argv)
    if not args.snapshot.is_file():
        parser.error(f"--snapshot {args.snapshot} does not exist")
    stats = None
    if args.dataset_root:
        from lerobot.datasets import LeRobotDatasetMetadata

        stats = LeRobotDatasetMetadata("local/stats", root=args.dataset_root).stats
    convert(
        args.snapshot,
        args.output_dir,
        dataset_stats=stats,
        frame_stack=args.frame_stack,
        id_encoding=args.id_encoding,
        camera=args.camera,
        image_size=args.image_size,
        action_scale=args.action_scale,
        action_repeat=args.action_repeat,
    )
    print(f"wrote a segdepth checkpoint to {args.output_dir}")


if __name__ == "__main__":
    main()
