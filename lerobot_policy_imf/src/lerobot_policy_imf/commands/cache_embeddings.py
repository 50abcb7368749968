"""`imf-cache-embeddings`: a copy of a dataset that holds every frame's frozen-encoder view embeddings.

Why: the SigLIP2 tower is frozen, so its output for a given frame never changes, yet a policy that encodes its
cameras every training step pays for ~93M parameters per view and frame (plus decoding the videos). This command
runs the policy's own encoder (`IMFPolicy.backbone.embed`, the code `select_action` runs) once per frame and writes
`observation.view_embeddings`, float32 (V, W) per frame, to a copy made by the suite's precompute machinery
(`so101_policy_common.precompute`: resumable shards, manifest, atomic rename, read-back check). The camera
columns are dropped from the copy (LeRobot would decode them for every sample) unless `--keep_videos=true`.

The cache is keyed: the feature's info records the encoder (Hub id or folder), a hash of its weights, its input
side, the cameras in order, and a hash of the source dataset's metadata. `lerobot-train --policy.type=imf` on the
copy refuses, before the first step, a cache made for another encoder, weights, side or camera set, and one whose
source dataset has changed since (e.g. episodes appended); the policy then declares the raw cameras, so its
checkpoint runs in lerobot-eval and on the arm like one trained on the raw frames.

    imf-cache-embeddings --dataset.repo_id=local/liftcube --dataset.root=data/liftcube \\
        --policy.cameras='[front,wrist]' --output_dir=data/liftcube_siglip
    lerobot-train --policy.type=imf --dataset.repo_id=local/liftcube_siglip --dataset.root=data/liftcube_siglip ...
    imf-cache-embeddings --policy.path=CKPT ...    # the encoder of a trained checkpoint
"""

import json  # no `from __future__ import annotations`: LeRobot's parser.wrap reads the config type at runtime
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
from lerobot.configs import parser
from lerobot.utils.feature_utils import dataset_to_policy_features

from so101_policy_common.precompute import (
    PolicyPrecomputeConfig,
    output_location,
    precompute_features,
    print_summary,
)
from so101_run_infra.cli import prepare_command_line

from ..cache import dataset_fingerprint
from ..configuration_imf import OBS_VIEW_EMBEDDINGS, IMFConfig

logger = logging.getLogger(__name__)

MADE_BY = "imf-cache-embeddings"


@dataclass
class CacheEmbeddingsConfig(PolicyPrecomputeConfig):
    command: ClassVar[str] = MADE_BY
    policy_class: ClassVar[type[IMFConfig]] = IMFConfig

    # The fields that shape the embeddings: --policy.siglip_model, --policy.encoder_image_size, --policy.cameras.
    # `--policy.path=CKPT` takes them (and the encoder's weights) from a trained checkpoint instead.
    policy: IMFConfig = field(default_factory=lambda: IMFConfig(device="cpu", push_to_hub=False))


def cache_info(policy, dataset) -> dict:
    """The cached feature's `info`: the cache key the policy checks, and the raw cameras it was made from."""
    raw = dataset_to_policy_features(dataset.meta.features)
    return {
        "made_by": MADE_BY,
        **policy.cache_key(),
        "source_repo_id": dataset.repo_id,
        "source_root": str(Path(dataset.root).resolve()),
        "source_fingerprint": dataset_fingerprint(dataset.root),
        "raw_features": {key: list(raw[key].shape) for key in policy.config.camera_keys},
    }


def cache_embeddings(cfg: CacheEmbeddingsConfig) -> dict:
    """Write the copy described by `cfg`; return a summary of the run."""
    from lerobot.policies.factory import make_policy

    dataset = cfg.dataset.open()
    if OBS_VIEW_EMBEDDINGS in dataset.meta.features:
        raise ValueError(f"dataset {dataset.repo_id} already holds '{OBS_VIEW_EMBEDDINGS}': train on it directly")
    output_root, output_repo_id = output_location(dataset, cfg.output_dir, cfg.output_repo_id, "_embeddings")
    policy = make_policy(cfg.policy, ds_meta=dataset.meta)  # validates the cameras against the dataset
    policy.eval()
    keys = policy.config.camera_keys

    @torch.no_grad()
    def compute(batch: dict) -> dict[str, torch.Tensor]:
        frames = torch.stack([batch[key].to(policy.config.device) for key in keys], dim=1)  # (B, V, 3, h, w)
        return {OBS_VIEW_EMBEDDINGS: policy.backbone.embed(frames).float().cpu()}

    info = cache_info(policy, dataset)
    width = policy.backbone.encoder.width
    spec = {"dtype": "float32", "shape": [len(keys), width], "names": ["view", "channel"], "info": info}
    summary = precompute_features(
        dataset,
        compute,
        {OBS_VIEW_EMBEDDINGS: spec},
        output_root,
        output_repo_id,
        {"made_by": MADE_BY, "cache": {k: v for k, v in info.items() if k != "made_by"}},
        remove_features=[] if cfg.keep_videos else list(dataset.meta.camera_keys),
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        restart=cfg.restart,
        desc="view embeddings",
        read_keys=keys,
    )
    summary["stored_bytes_per_frame"] = 4 * len(keys) * width
    logger.info("wrote %s", json.dumps(summary))
    return summary


@parser.wrap()
def cache_main(cfg: CacheEmbeddingsConfig) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    summary = cache_embeddings(cfg)
    print_summary(summary, "imf", f"--policy.siglip_model={cfg.policy.siglip_model}")
    return summary


def main() -> None:
    prepare_command_line(plugins=True)
    cache_main()


if __name__ == "__main__":
    main()
