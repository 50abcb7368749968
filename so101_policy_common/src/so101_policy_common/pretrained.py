"""Pretrained models a checkpoint names but cannot hold, and the check a policy runs before a robot connects.

A policy checkpoint holds its own weights and, inside its saved preprocessor, the suite segmenter's
(so101_segmenter.carried). Models too big to copy into every checkpoint (Depth Anything V2, Mask2Former, SmolVLM2's
tokenizer, SigLIP2) stay named by their Hub id or a local folder. Two things make a missing one fail early and say
what to do:

- `pretrained_hint` wraps each `from_pretrained` of such a model: transformers' OSError becomes one that names the id,
  the cache it looked in, the command that fetches it and the flag that points at a local copy;
- `check_saved_pipeline` reads a checkpoint's saved preprocessor (its JSON only) and asks each step whether what it
  will load is there. The suite's policies run it in `from_pretrained` (`ChecksSavedProcessors`), because
  lerobot-rollout loads the policy before it connects the robot but builds the processors after (lerobot 0.6.1
  rollout/context.py, steps 1, 3 and 6); lerobot-eval and lerobot-train build both before anything moves.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

PREPROCESSOR_FILE = "policy_preprocessor.json"  # lerobot.utils.constants.POLICY_PREPROCESSOR_DEFAULT_NAME + .json


class PretrainedModelMissingError(OSError):
    """A pretrained model named by Hub id is neither a local folder nor in the Hugging Face cache, nor reachable."""


def missing_message(name: str, what: str, flag: str | None = None) -> str:
    from huggingface_hub import constants

    where = f"; or use a local copy: {flag}" if flag else ""
    return (
        f"{what} needs the pretrained model '{name}', which is not a local folder, not in the Hugging Face cache "
        f"({constants.HF_HUB_CACHE}) and could not be downloaded"
        f"{' (HF_HUB_OFFLINE is set)' if constants.HF_HUB_OFFLINE else ''}. Fetch it on a machine with a network: "
        f"`hf download {name}` (then copy that cache folder here, or set HF_HUB_CACHE to it){where}."
    )


@contextmanager
def pretrained_hint(name: str, what: str, flag: str | None = None) -> Iterator[None]:
    """Around a `from_pretrained(name)`: a model that cannot be found raises `PretrainedModelMissingError` naming
    `name`, how to fetch it and `flag`; transformers' own message follows it."""
    from huggingface_hub.errors import HFValidationError

    try:
        yield
    except PretrainedModelMissingError:
        raise
    except (OSError, HFValidationError) as e:  # transformers: not found / not downloadable; a malformed id
        if Path(str(name)).is_dir():  # a local folder that is there but broken: transformers' message says why
            raise
        raise PretrainedModelMissingError(f"{missing_message(str(name), what, flag)} ({e})") from e


def require_pretrained(name: str, what: str, flag: str | None = None) -> None:
    """Raise `PretrainedModelMissingError` unless `name` is a local folder, is in the Hugging Face cache, or (with
    a network) its config.json can be fetched now. Loads nothing but that small file."""
    name = str(name)
    if Path(name).is_dir():
        return
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise PretrainedModelMissingError(f"{what}: the model folder '{name}' does not exist on this machine")
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return
    if constants.HF_HUB_OFFLINE:
        raise PretrainedModelMissingError(missing_message(name, what, flag))
    try:
        hf_hub_download(name, "config.json")
    except Exception as e:  # any failure (no network, no such repo, gated) ends in the same advice
        raise PretrainedModelMissingError(f"{missing_message(name, what, flag)} ({type(e).__name__}: {e})") from e


def _saved_pipeline(pretrained: str | Path, filename: str) -> tuple[dict, Path | None] | None:
    """The saved pipeline's JSON and the local folder holding its state files (None for a Hub checkpoint); None
    when there is no such file to read (LeRobot then raises its own error when it loads the pipeline)."""
    folder = Path(str(pretrained))
    if folder.is_dir():
        path = folder / filename
        if not path.is_file():
            return None
        return json.loads(path.read_text()), folder
    try:
        from huggingface_hub import hf_hub_download

        return json.loads(Path(hf_hub_download(str(pretrained), filename)).read_text()), None
    except Exception:  # not a Hub checkpoint either: nothing to check here
        return None


def _check_step(entry: dict[str, Any], folder: Path | None) -> None:
    from lerobot.processor import ProcessorStepRegistry

    name, config = entry.get("registry_name"), entry.get("config") or {}
    if name == "tokenizer_processor" and config.get("tokenizer_name"):
        # LeRobot's own step loads the tokenizer by name (the VLM's, for SegVLA and HLRP) when it is built
        require_pretrained(config["tokenizer_name"], "the policy's tokenizer step (the VLM's tokenizer)")
        return
    try:
        step_class = ProcessorStepRegistry.get(name) if name else None
    except KeyError:
        return  # not a registered step here: LeRobot names it when it loads the pipeline
    check = getattr(step_class, "check_saved", None)
    if check is None:
        return
    state = entry.get("state_file")
    check(config, folder / state if state and folder is not None else None, bool(state))


def check_saved_pipeline(pretrained: str | Path, filename: str = PREPROCESSOR_FILE) -> None:
    """Raise, naming what is missing and how to get it, unless every step of the saved pipeline will load here:
    state files present, models named by Hub id cached or reachable, tokenizers likewise."""
    saved = _saved_pipeline(pretrained, filename)
    if saved is None:
        return
    data, folder = saved
    for entry in data.get("steps", []):
        _check_step(entry, folder)


def check_camera_resize_flags(pretrained: str | Path, config: Any) -> None:
    """Refuse a `--policy.camera_resize` / `--policy.camera_aspect_tolerance` that differs from what the checkpoint's
    saved preprocessor resizes with: LeRobot loads that pipeline as saved, so the flag would be silently ignored."""
    saved = _saved_pipeline(pretrained, PREPROCESSOR_FILE) if hasattr(config, "camera_resize") else None
    entries = saved[0].get("steps", []) if saved else []
    steps = [s for s in entries if s.get("registry_name") == "so101_resize_cameras"]
    if not steps:
        return
    step = steps[0].get("config") or {}
    mode, tolerance = step.get("mode", "crop"), step.get("aspect_tolerance", 0.1)
    if config.camera_resize != mode or abs(config.camera_aspect_tolerance - tolerance) > 1e-9:
        raise ValueError(
            f"--policy.camera_resize={config.camera_resize} --policy.camera_aspect_tolerance="
            f"{config.camera_aspect_tolerance}, but this checkpoint's saved preprocessor resizes cameras with "
            f"camera_resize={mode}, camera_aspect_tolerance={tolerance}, and LeRobot loads it as saved. Drop the "
            "flags, or train a checkpoint with them."
        )


class ChecksSavedProcessors:
    """Policy mixin (before PreTrainedPolicy in the bases): `from_pretrained` first runs `check_saved_pipeline` on
    the checkpoint's preprocessor, so a checkpoint that would fail when its processors are built fails while the
    policy is made, before lerobot-rollout connects the robot; and refuses camera resize flags it would ignore."""

    @classmethod
    def from_pretrained(cls, pretrained_name_or_path, *args, **kwargs):
        check_saved_pipeline(pretrained_name_or_path)
        check_camera_resize_flags(pretrained_name_or_path, kwargs.get("config"))
        return super().from_pretrained(pretrained_name_or_path, *args, **kwargs)
