"""The segmenter as part of a saved LeRobot processor pipeline: its weights travel with the checkpoint.

A processor step that runs the segmenter (SegDepth's `so101_segmenter`, SegVLA's `segvla_segmenter_scores`) mixes in
`CarriesSegmenter`. LeRobot saves a step's `state_dict()` next to the pipeline's JSON
(`policy_preprocessor_step_<i>_<name>.safetensors`) and, when the pipeline is loaded, builds the step from its saved
config and then calls `load_state_dict` with that file. So:

- built from a folder (a training run names `segmenter_path`): the weights are read at once, from the folder, and
  the segmenter's config is recorded in the step's config (`segmenter_config`), with the folder and the sha256 of
  its weights file (`segmenter_source`: which segmenter this checkpoint reads; `so101-seg-swap` puts in another);
- built from a saved pipeline (`segmenter_config` is there): the weights come from the state file, read by LeRobot
  right after the step is built. The folder the checkpoint was trained with is never opened again, so the checkpoint
  runs wherever it is copied or pushed;
- a pipeline saved by 0.1 (a path and no `segmenter_config`) loads from the path, and carries the weights once it
  is saved again.

Either way the segmenter is loaded when the pipeline is made, never at the first frame, and `check_saved` tells a
policy's `from_pretrained` (which LeRobot's rollout runs before it connects the robot) whether it will load.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, ClassVar

import torch

from .model import CONFIG_NAME, WEIGHTS_NAME, EfficientViTFPN, SegmenterConfig, load_checked_state, load_segmenter
from .shipped import sha256

RESAVE_HINT = (
    "re-save it with the segmenter inside (segdepth-sim2real-check --export_dir=NEW --segmenter_path=FOLDER for "
    "SegDepth), or copy the segmenter's folder to that path"
)


def segmenter_fingerprint(model: torch.nn.Module) -> str:
    """sha256 over the state dict's names and float32 bytes, first 16 hex digits."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


class CarriesSegmenter:
    """Mixin for a dataclass processor step that runs the suite's segmenter and saves its weights with the pipeline.

    The step declares the fields `<SEGMENTER_PATH_FIELD>: str | None` (a `save_segmenter` folder),
    `segmenter_config: dict | None` and `segmenter_source: dict | None`, and calls `_init_segmenter` from its
    `__post_init__`.
    """

    SEGMENTER_PATH_FIELD: ClassVar[str] = "segmenter_path"
    segmenter_config: dict | None
    segmenter_source: dict | None

    def _init_segmenter(self, num_classes: int | None = None) -> None:
        self._segmenter: EfficientViTFPN | None = None
        path = getattr(self, self.SEGMENTER_PATH_FIELD)
        if self.segmenter_config is None:
            if not path:
                raise ValueError(
                    f"{type(self).__name__} needs `{self.SEGMENTER_PATH_FIELD}` (a so101-seg-train checkpoint folder,"
                    " e.g. outputs/segmenter/best) or a saved `segmenter_config` with its state file"
                )
            # loaded now: a missing or mismatched folder is an error while the pipeline is made
            self._segmenter = load_segmenter(path, num_classes=num_classes)
            self.segmenter_config = self._segmenter.config.to_dict()
            # which segmenter the saved pipeline reads, checkable against a folder (so101-seg-swap writes it too)
            self.segmenter_source = {"path": str(path), "sha256": sha256(Path(path) / WEIGHTS_NAME)}
        elif num_classes is not None and self.segmenter_config.get("num_classes") != num_classes:
            raise ValueError(
                f"the saved segmenter has num_classes={self.segmenter_config.get('num_classes')}, the policy needs "
                f"{num_classes}"
            )

    @property
    def segmenter(self) -> EfficientViTFPN:
        if self._segmenter is None:
            raise RuntimeError(
                f"{type(self).__name__} has no segmenter weights: the saved pipeline names a segmenter_config but "
                "its state file was not loaded (copy the whole checkpoint folder, *.safetensors included)"
            )
        return self._segmenter

    @property
    def segmenter_fingerprint(self) -> str:
        """What stored scores must have been computed with: a hash of the segmenter's weights (names and bytes)."""
        return segmenter_fingerprint(self.segmenter)

    def state_dict(self) -> dict[str, torch.Tensor]:
        if self._segmenter is None:
            return {}
        return {k: v.detach().cpu().contiguous() for k, v in self._segmenter.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        config = SegmenterConfig.from_dict({**self.segmenter_config, "pretrained": False}, source="saved pipeline")
        model = EfficientViTFPN(config)
        load_checked_state(model, state, f"the {type(self).__name__} state file", "the saved segmenter_config")
        self._segmenter = model.eval().requires_grad_(False)

    @classmethod
    def check_saved(cls, config: dict[str, Any], state_file: Path | None, has_state: bool) -> None:
        """Before the pipeline is built: will a step saved with `config` find its weights?

        `has_state`: the saved entry names a state file; `state_file`: its local path (None for a Hub checkpoint,
        whose files LeRobot downloads).
        """
        if has_state:
            if state_file is not None and not state_file.is_file():
                raise FileNotFoundError(
                    f"the checkpoint's {cls.__name__} keeps the segmenter's weights in {state_file}, which is "
                    "missing: copy the whole checkpoint folder"
                )
            return
        path = config.get(cls.SEGMENTER_PATH_FIELD)
        if not path or not (Path(path) / WEIGHTS_NAME).is_file() or not (Path(path) / CONFIG_NAME).is_file():
            raise FileNotFoundError(
                f"this checkpoint was saved before the segmenter travelled with it: its {cls.__name__} names the "
                f"segmenter folder {path!r} ({CONFIG_NAME} + {WEIGHTS_NAME}), which is not on this machine; "
                + RESAVE_HINT
            )
