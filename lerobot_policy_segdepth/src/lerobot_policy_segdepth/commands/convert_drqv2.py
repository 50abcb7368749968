"""Convert a DrQ-v2 snapshot ({"encoder": ..., "actor": ...}, as ggand0/pick-101 saves them) into a segdepth
checkpoint that `lerobot-eval --policy.path=...` and `lerobot-rollout --policy.path=...` load.

    segdepth-convert-drqv2 --snapshot_path=1200000_snapshot.pt --output_dir=outputs/segdepth_from_drqv2

Network sizes come from the snapshot's tensors. What a snapshot does not record is asked for: how its
6 input channels were laid out (pick-101: 3 frames of [ids/255, disparity/255], i.e. --id_encoding=scaled),
and the joint-delta scale and action repeat it was trained with.

A snapshot is read weights-only: tensors, dicts and numbers. One that pickles more (DrQ-v2's own train.py pickles
the whole agent, classes and all) could run any code while it loads, so it is refused, naming what it wants to
import, unless `--trust_pickle=true` says the file is trusted; then its `agent` (or `encoder` and `actor`) modules
are unpickled in full, which needs DrQ-v2's code importable.
"""

import dataclasses
import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from lerobot.configs import FeatureType, PolicyFeature, parser
from lerobot.utils.constants import ACTION, OBS_STATE

from so101_run_infra.atomic import atomic_folder, write_json
from so101_run_infra.checkpoints import save_policy
from so101_run_infra.cli import prepare_command_line
from so101_run_infra.dataset_ref import DatasetRef
from so101_run_infra.pickled import UntrustedPickleError, load_trusted_pickle, load_weights_only
from so101_run_infra.runs import as_json, made_here

from ..configuration_segdepth import SegDepthConfig
from ..modeling_segdepth import SegDepthPolicy
from ..processor_segdepth import make_segdepth_pre_post_processors

# beside the checkpoint: what it was converted from, so that a run again knows its own output
RECORD = "segdepth_from_drqv2.json"


def _state_dict(snapshot: dict, part: str, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(snapshot, dict):
        raise ValueError(
            f"{path}: a DrQ-v2 snapshot is a dict with 'encoder' and 'actor', got a {type(snapshot).__name__}"
        )
    agent = snapshot.get("agent")
    if part not in snapshot and isinstance(getattr(agent, part, None), torch.nn.Module):  # DrQ-v2's own snapshot
        return getattr(agent, part).state_dict()
    if part not in snapshot:
        raise KeyError(f"{path}: no '{part}' entry; a DrQ-v2 snapshot has 'encoder' and 'actor', got {list(snapshot)}")
    value = snapshot[part]
    return value.state_dict() if isinstance(value, torch.nn.Module) else dict(value)


@dataclass
class StatsDatasetConfig(DatasetRef):
    """A LeRobot dataset whose stats normalise the state (needed when the actor reads observation.state); read
    only when --dataset.root is given."""

    # the stats dataset's repo id
    repo_id: str = "local/stats"


@dataclass
class ConvertDrQV2Config:
    # a DrQ-v2 snapshot: a torch file with 'encoder' and 'actor'; required
    snapshot_path: Path | None = None
    # where the segdepth checkpoint goes; required. Run again over its own conversion it does nothing; it refuses a
    # folder holding anything else
    output_dir: Path | None = None
    dataset: StatsDatasetConfig = field(default_factory=StatsDatasetConfig)
    # frames stacked in the snapshot's input (pick-101: 3)
    frame_stack: int = 3
    # how the class ids were fed: scaled (ids/255, pick-101's), onehot or embedding
    id_encoding: str = "scaled"
    # the camera the snapshot saw: the checkpoint reads observation.images.<camera>_depth and _segmentation
    camera: str = "wrist"
    # the square side the snapshot was trained at
    image_size: int = 84
    # joint-delta scale per joint, gripper last
    action_scale: list[float] = field(default_factory=lambda: [4.0, 4.0, 4.0, 4.0, 4.0, 15.0])
    # pick-101 trained with action_repeat=2
    action_repeat: int = 2
    # load a snapshot that pickles classes (DrQ-v2's whole agent) in full, which runs whatever code it names: true
    # only for a file you trust
    trust_pickle: bool = False

    def __post_init__(self):
        if self.snapshot_path is None or self.output_dir is None:
            raise ValueError("--snapshot_path and --output_dir are required")
        if self.id_encoding not in ("scaled", "onehot", "embedding"):
            raise ValueError(f"--id_encoding must be scaled, onehot or embedding, got {self.id_encoding!r}")
        if len(self.action_scale) != 6:
            raise ValueError(f"--action_scale takes 6 values ('[a,b,c,d,e,f]'), got {self.action_scale}")


def config_from_snapshot(
    encoder: dict[str, torch.Tensor], actor: dict[str, torch.Tensor], cfg: ConvertDrQV2Config
) -> SegDepthConfig:
    needed = {"convnet.0.weight": encoder, "trunk.0.weight": actor, "policy.0.weight": actor, "policy.4.weight": actor}
    missing = [key for key, sd in needed.items() if key not in sd]
    if missing:
        raise KeyError(f"not a DrQ-v2 encoder/actor: missing {missing}")
    camera, image_size, frame_stack, id_encoding = cfg.camera, cfg.image_size, cfg.frame_stack, cfg.id_encoding
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
        action_scale=cfg.action_scale,
        action_repeat=cfg.action_repeat,
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


def conversion_record(cfg: ConvertDrQV2Config) -> dict:
    """What a conversion is made of: the snapshot's bytes (sha256: a path may name another file later) and every
    setting but the output folder."""
    settings = as_json(dataclasses.asdict(cfg))
    del settings["output_dir"]
    digest = hashlib.sha256(Path(cfg.snapshot_path).read_bytes()).hexdigest()
    return {"snapshot_sha256": digest, "settings": settings}


def convert(cfg: ConvertDrQV2Config) -> SegDepthPolicy | None:
    """The segdepth policy of `cfg.snapshot_path`, saved to `cfg.output_dir` (its state normalised by the stats of
    `cfg.dataset`, when its root is given); None when that folder already holds this conversion."""
    record = conversion_record(cfg)
    if made_here(cfg.output_dir, RECORD, record, "segdepth-convert-drqv2", "a conversion"):
        print(f"{cfg.output_dir}: already made with these settings (from {cfg.snapshot_path}); nothing to do")
        return None
    dataset_stats = cfg.dataset.metadata().stats if cfg.dataset.root else None
    snapshot_path = cfg.snapshot_path
    snapshot = load_trusted_pickle(snapshot_path) if cfg.trust_pickle else load_weights_only(snapshot_path)
    encoder, actor = _state_dict(snapshot, "encoder", snapshot_path), _state_dict(snapshot, "actor", snapshot_path)
    config = config_from_snapshot(encoder, actor, cfg)
    if config.use_state and not dataset_stats:
        raise ValueError("this actor reads observation.state: pass --dataset.root to take its normalisation stats")
    policy = SegDepthPolicy(config)
    if policy.encoder.repr_dim != actor["trunk.0.weight"].shape[1]:
        raise ValueError(
            f"the actor expects {actor['trunk.0.weight'].shape[1]} encoder features, the encoder gives "
            f"{policy.encoder.repr_dim} at image_size={config.image_size}: was it trained at another size?"
        )
    policy.encoder.load_state_dict(encoder, strict=True)
    policy.actor.load_state_dict({k: v for k, v in actor.items() if k.startswith(("trunk.", "policy."))}, strict=True)
    pre, post = make_segdepth_pre_post_processors(config, dataset_stats=dataset_stats)
    with atomic_folder(cfg.output_dir) as staging:  # the checkpoint appears whole or not at all
        save_policy(staging, policy, pre, post)
        write_json(staging / RECORD, record)
    print(f"wrote a segdepth checkpoint to {cfg.output_dir}")
    return policy


@parser.wrap()
def convert_cli(cfg: ConvertDrQV2Config) -> None:
    if not cfg.snapshot_path.is_file():
        raise FileNotFoundError(f"--snapshot_path {cfg.snapshot_path} does not exist")
    convert(cfg)


def main() -> None:
    prepare_command_line()
    try:
        convert_cli()
    except UntrustedPickleError as e:  # a refusal, not a crash: its one line is the whole story
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
