"""The settings of `so101-seg-autolabel` (plain data: parsing them imports neither the twin nor torch)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from so101_run_infra.dataset_ref import DatasetRef

from .grasp import GraspConfig

SETTINGS = "autolabel_settings.json"  # what shaped an output folder's labels
REPORT = "autolabel_report.json"  # written last: the folder is finished
CAMERA_FIT = "camera_fit.json"
EPISODES = "episodes"  # one stats file per finished episode


@dataclass
class FitConfig:
    """The camera and cube fits of so101-seg-autolabel."""

    # fit each camera's pose and field of view to the segmenter's table and background (the arm's links)
    cameras: bool = True
    # ... and to its fingers. Off, the arm's outline against the table alone places the cameras: measured worse with
    # the shipped segmenter, and with an adapted one better on one recording and worse on another (docs/results.md)
    camera_fingers: bool = True
    # recorded frames the camera fit compares on (spread over the episodes)
    camera_frames: int = 24
    # first step of the camera search: metres, degrees (rotation), degrees (field of view); halved three times
    camera_step: tuple[float, float, float] = (0.004, 1.0, 1.0)
    # how far the fit may move a camera from its mount, in the same units: what remounting a camera gives
    camera_limit: tuple[float, float, float] = (0.02, 5.0, 5.0)
    # fit the cube's place along the jaws to the segmenter's cube, per episode. Off: with a segmenter that finds the
    # cube poorly in the look (the shipped one on `unseen`, cube IoU 0.48) it moved the labels off more often than on
    # (docs/results.md)
    cube: bool = False
    # how far (m) the search moves the cube: along the closing direction, along the jaws' faces
    cube_range: tuple[float, float] = (0.006, 0.015)
    # frames before the grasp the cube fit compares on, per episode
    cube_frames: int = 8
    # fit where between the jaws the held cube sits to its colour, learnt from the episode's held frames
    held: bool = True
    # how far (m) that fit moves it: along the closing direction, along the jaws' faces
    held_range: tuple[float, float] = (0.004, 0.008)
    # place the cube where it stood before the arm reached it by its colour, learnt from the episode's frames where
    # the jaws hold it; off: it stands where the grasp found it from the episode's start
    standing: bool = True
    # how far (m) from its grasp pose the standing cube is searched for, on the table
    standing_range_m: float = 0.03
    # held frames the cube's colour is learnt from, and frames before the arm comes near the fit compares on
    colour_frames: int = 8
    # see colour_frames
    standing_frames: int = 6
    # the fit is used when at least this share of its cube's pixels look like the cube; else the grasp pose is
    standing_min_precision: float = 0.5
    # a standing cube this close (m) to its grasp pose was only slid by the closing jaws: the frames between the arm
    # touching it and the grasp are labelled at the grasp pose; farther, it was pushed, and they are skipped
    standing_same_m: float = 0.004

    def validate(self) -> None:
        if min(self.camera_frames, self.cube_frames, self.colour_frames, self.standing_frames) < 1:
            raise ValueError("--fit.camera_frames, cube_frames, colour_frames and standing_frames must be >= 1")
        if self.standing_range_m <= 0 or self.standing_same_m < 0 or not 0 <= self.standing_min_precision <= 1:
            raise ValueError("--fit.standing_range_m must be > 0, --fit.standing_same_m >= 0 and "
                             "--fit.standing_min_precision in [0, 1]")  # fmt: skip
        if min(self.camera_step) <= 0 or min(self.cube_range) < 0 or min(self.held_range) < 0:
            raise ValueError("--fit.camera_step must be > 0, --fit.cube_range and --fit.held_range >= 0")


@dataclass
class LabelErrors:
    """Errors put into the twin's belief on purpose, to measure the labels under them (0 and 1: none)."""

    # every camera's mount moved this far (m) in a random direction
    camera_pos_m: float = 0.0
    # every camera's mount turned this much (degrees) about a random axis
    camera_rot_deg: float = 0.0
    # every joint reading off by this much (degrees; the gripper by as much of its joint angle), random signs
    joint_offset_deg: float = 0.0
    # the table believed this much (m) higher than it is
    table_height_m: float = 0.0
    # the cube believed this many times its size
    cube_scale: float = 1.0
    # the random directions and signs
    seed: int = 0

    def validate(self) -> None:
        if self.camera_pos_m < 0 or self.camera_rot_deg < 0 or self.joint_offset_deg < 0:
            raise ValueError("--errors.camera_pos_m, camera_rot_deg and joint_offset_deg are sizes: give them >= 0")
        if self.cube_scale <= 0:
            raise ValueError(f"--errors.cube_scale must be > 0, got {self.cube_scale}")


@dataclass
class RecordingConfig(DatasetRef):
    """The recording to label: lerobot-record's --dataset.repo_id and --dataset.root, optionally some episodes."""

    # episode indices to label (e.g. '[0,1,2]'); null: all
    episodes: list[int] | None = None


@dataclass
class AutolabelConfig:
    dataset: RecordingConfig = field(default_factory=RecordingConfig)
    # the labelled folder (index.json, images/, masks/, disparity/, the report); required
    output_dir: Path | None = None
    # the recording's cameras to label, by the twin's names (observation.images.<name>)
    cameras: list[str] = field(default_factory=lambda: ["front", "wrist"])
    # every frame_stride-th frame of each episode is labelled
    frame_stride: int = 5
    # pixels on each side of every class boundary left unlabeled (0: none)
    boundary_px: int = 1
    # label the frames before the grasp too, where the cube stands where the grasp found it; false: from the grasp on
    # only, where it moves with the jaws and its place is surer (the approach is then learnt from other frames)
    label_before_grasp: bool = True
    # a wider band around the cube alone (pixels each side; 0: the common band): the joints place it least surely
    cube_band_px: int = 0
    # your cube's edge (m) and your table top's height above the arm's base (m)
    cube_size_m: float = 0.03
    table_height_m: float = 0.0
    # where the twin's table meets what the segmenter confidently calls background (an object the twin does not
    # know, on the table) leave the pixel unlabeled
    unlabel_unknown_objects: bool = True
    # the segmenter the fits (and the unknown-object check) compare with: `shipped` or a so101-seg-train folder
    segmenter_path: str = "shipped"
    grasp: GraspConfig = field(default_factory=GraspConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    # errors put into the twin's belief on purpose, to measure the labels under them (leave at the defaults)
    errors: LabelErrors = field(default_factory=LabelErrors)
    # frames in autolabel_grid.png: half spread over the labelled frames, half the worst (by mIoU against the truth)
    grid_frames: int = 12
    # torch threads for the segmenter
    threads: int = 1

    def __post_init__(self) -> None:
        if self.output_dir is None:
            raise ValueError("--output_dir is required: the folder the labelled frames go to")
        if self.dataset.root is None and self.dataset.repo_id is None:
            raise ValueError("--dataset.repo_id (and --dataset.root for a local recording) name the recording to label")
        if self.frame_stride < 1 or self.threads < 1 or min(self.boundary_px, self.cube_band_px, self.grid_frames) < 0:
            raise ValueError("--frame_stride and --threads must be >= 1; --boundary_px, --cube_band_px and "
                             "--grid_frames >= 0")  # fmt: skip
        if self.cube_size_m <= 0:
            raise ValueError(f"--cube_size_m must be > 0, got {self.cube_size_m}")
        unknown = [c for c in self.cameras if c not in ("front", "wrist")]
        if unknown or not self.cameras:
            raise ValueError(f"--cameras={self.cameras}: the twin can place only its cameras 'front' and 'wrist'")
        self.grasp.validate()
        self.fit.validate()
        self.errors.validate()

    def settings(self) -> dict:
        """What shapes the labels: a finished output made with other settings is refused, not mixed."""
        out = asdict(self)
        for key in ("output_dir", "grid_frames", "threads"):
            out.pop(key)
        data = self.dataset
        out["dataset"] = {"repo_id": data.repo_id, "root": str(data.root), "episodes": data.episodes}
        return json.loads(json.dumps(out, default=str))
