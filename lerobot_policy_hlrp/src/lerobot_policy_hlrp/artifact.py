"""The stage-2 artifact: what `hlrp-train-trunk` hands to the `hlrp` policy, checked strictly on the way in.

    <artifact>/manifest.json      format, the CoreConfig, SmolVLM's config dict, the LAQ it was supervised by
                                  (folder, sha256 of its weights, its config), the training mode, the
                                  supervision (latent_only | latent_and_actions | actions_only) and step
    <artifact>/core.safetensors   SharedCore's state dict (trunk + heads), loaded with strict=True

Stage 3 rebuilds the core from the manifest (no Hub access needed) and refuses an artifact whose format, head sizes
or LAQ hash differ from what it is asked to use.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from safetensors.torch import load_file, save_file

from so101_run_infra.atomic import atomic_folder

from .trunk import CoreConfig, SharedCore

FORMAT = "so101_hlrp.stage2.v1"
MANIFEST = "manifest.json"
WEIGHTS = "core.safetensors"


SUPERVISIONS = ("latent_only", "latent_and_actions", "actions_only")


def save_artifact(
    folder: str | Path, core: SharedCore, *, mode: str, laq: dict, step: int, supervision: str | None = None
) -> Path:
    """Write atomically: a sibling staging folder, then swapped in (an interrupted save leaves the old artifact).
    `supervision` None: what `mode` alone implies (codes: latent only, actions: actions only, multitask: both)."""
    folder = Path(folder)
    supervision = supervision or {"codes": "latent_only", "actions": "actions_only"}.get(mode, "latent_and_actions")
    if supervision not in SUPERVISIONS:
        raise ValueError(f"supervision={supervision!r}; choose one of {list(SUPERVISIONS)}")
    manifest = {
        "format": FORMAT,
        "core": dataclasses.asdict(core.config),
        "vlm_config": core.vlm.config.to_dict(),
        "laq": laq,
        "mode": mode,
        "supervision": supervision,
        "step": step,
    }
    state = {k: v.detach().contiguous().cpu() for k, v in core.state_dict().items()}
    with atomic_folder(folder) as staging:
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
        save_file(state, staging / WEIGHTS)
    return folder


def read_manifest(folder: str | Path) -> dict:
    folder = Path(folder)
    for name in (MANIFEST, WEIGHTS):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"stage-2 artifact '{folder}' has no {name}: not an hlrp-train-trunk output")
    manifest = json.loads((folder / MANIFEST).read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"stage-2 artifact '{folder}' has format {manifest.get('format')!r}, expected {FORMAT!r}")
    return manifest


def core_config(manifest: dict) -> CoreConfig:
    return CoreConfig(**manifest["core"])


def check_matches(manifest: dict, expected: CoreConfig, folder: str | Path) -> None:
    """Every field of the core the policy would build must equal the artifact's (name them all if not)."""
    stored = manifest["core"]
    wanted = dataclasses.asdict(expected)
    diff = {k: (stored.get(k), v) for k, v in wanted.items() if stored.get(k) != v}
    if diff:
        lines = ", ".join(f"{k}: artifact {a!r} vs policy {b!r}" for k, (a, b) in diff.items())
        raise ValueError(f"stage-2 artifact '{folder}' does not match the policy's core ({lines})")


def stage2_record(manifest: dict, folder: str | Path) -> dict:
    """What stage 3 keeps of the artifact it starts from (in its config, so a checkpoint and a report show it)."""
    laq = manifest.get("laq") or {}
    return {
        "artifact": str(folder),
        "mode": manifest.get("mode"),
        # artifacts written before the field: the mode implied it (multitask always read actions then)
        "supervision": manifest.get("supervision")
        or {"codes": "latent_only", "actions": "actions_only"}.get(manifest.get("mode"), "latent_and_actions"),
        "step": manifest.get("step"),
        "laq_folder": laq.get("folder"),
        "laq_sha256": laq.get("sha256"),
    }


def check_laq(manifest: dict, laq_folder: str | Path, folder: str | Path) -> None:
    """The LAQ a stage uses must be the one the artifact was supervised with (same weights, by hash)."""
    from .laq import WEIGHTS_NAME, laq_checkpoint_hash

    want = (manifest.get("laq") or {}).get("sha256")
    if not want:
        raise ValueError(
            f"stage-2 artifact '{folder}' ({Path(folder) / MANIFEST}) was trained without a LAQ (mode "
            f"{manifest.get('mode')!r}): LAQ '{laq_folder}' cannot be the one it learned latent actions from; train "
            "stage 3 with --policy.latent_loss_weight=0 or use an artifact of mode multitask/codes"
        )
    have = laq_checkpoint_hash(laq_folder)
    if want != have:
        raise ValueError(
            f"LAQ checkpoint '{laq_folder}' ({Path(laq_folder) / WEIGHTS_NAME}, sha256 {have[:12]}...) is not the "
            f"one stage-2 artifact '{folder}' was trained with ({Path(folder) / MANIFEST}: sha256 {want[:12]}..., "
            f"from {manifest['laq'].get('folder')}): the LAQ it names was retrained or replaced since"
        )


def load_core_weights(core: SharedCore, folder: str | Path) -> None:
    core.load_state_dict(load_file(Path(folder) / WEIGHTS), strict=True)
