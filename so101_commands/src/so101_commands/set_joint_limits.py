"""`so101-joint-limits`: a copy of a policy checkpoint whose postprocessor clips to a real arm's joint limits.

A checkpoint trained in the twin clips to the twin's MJCF ranges; on a real follower the limits are that arm's, read
from its calibration (`lerobot-calibrate` writes it) or from a saved `lerobot-find-joint-limits` output. lerobot-rollout
loads the postprocessor as saved (only the device and the rename map can be overridden on its command line), so the
limits are written into the checkpoint, in a new folder:

    so101-joint-limits --policy.path=outputs/train/x/checkpoints/last/pretrained_model --robot_id=my_follower \\
        --output_dir=outputs/x_my_follower
    so101-joint-limits --policy.path=... --joint_limits_file=find_joint_limits.txt --output_dir=...

The copy's config.json records the new limits and the file they came from. A preprocessor saved before the suite
resized cameras (no `so101_resize_cameras` step) gets that step, right after the camera check, so the copy runs on a
camera of any size with the trained aspect; every other file is copied unchanged.
"""

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from lerobot.configs import parser

from so101_core.joint_limits import TWIN_JOINT_LIMITS, follower_limits, read_joint_limits
from so101_policy_common.steps import ClipJointTargetsStep, ResizeCamerasStep, is_map_key
from so101_run_infra.atomic import atomic_folder, write_json
from so101_run_infra.cli import prepare_command_line

CLIP_STEPS = ("so101_clip_joint_targets", "segdepth_clip_joint_targets")  # the second: segdepth pipelines of 0.1
POSTPROCESSOR = "policy_postprocessor.json"
PREPROCESSOR = "policy_preprocessor.json"
RESIZE_STEP = "so101_resize_cameras"


@dataclass
class JointLimitsCommandConfig:
    # the arm's id as given to lerobot-calibrate (--robot.id): its calibration is read from LeRobot's folder
    robot_id: str | None = None
    # where the calibration files are, as --robot.calibration_dir; None: LeRobot's (HF_LEROBOT_CALIBRATION)
    calibration_dir: str | None = None
    # instead of --robot_id: a follower calibration (.json) or a saved lerobot-find-joint-limits output
    joint_limits_file: str | None = None
    # the new checkpoint folder (must not exist); --policy.path is left as it is
    output_dir: str | None = None

    @classmethod
    def __get_path_fields__(cls) -> list[str]:
        return ["policy"]  # --policy.path=<pretrained_model folder>, LeRobot's spelling, read by the command

    def limits(self) -> tuple[list[list[float]], str]:
        """The arm's limits and the file they come from; a clear error before anything is written."""
        if (self.robot_id is None) == (self.joint_limits_file is None):
            raise ValueError("give the arm's limits by exactly one of --robot_id=<id> or --joint_limits_file=<file>")
        if self.joint_limits_file is not None:
            return read_joint_limits(self.joint_limits_file), str(Path(self.joint_limits_file).expanduser())
        limits, path = follower_limits(self.robot_id, self.calibration_dir, "--robot_id",
                                       "--calibration_dir or --joint_limits_file")  # fmt: skip
        return limits, str(path)


def set_joint_limits(checkpoint: Path, output_dir: Path, limits: list[list[float]], source: str) -> list[list[float]]:
    """Copy `checkpoint` to `output_dir` with every clip step of its postprocessor (and config.json) set to `limits`;
    a postprocessor without one gets it before its last step (the move to the CPU). Returns the limits replaced."""
    if output_dir.exists():
        raise FileExistsError(f"--output_dir {output_dir} exists; choose a new folder")
    for name in ("config.json", POSTPROCESSOR):
        if not (checkpoint / name).is_file():
            raise FileNotFoundError(f"--policy.path {checkpoint} has no {name}: is it a pretrained_model folder?")
    post = json.loads((checkpoint / POSTPROCESSOR).read_text())
    clips = [step for step in post["steps"] if step.get("registry_name") in CLIP_STEPS]
    previous = clips[0]["config"]["limits"] if clips else None
    for step in clips:
        step["config"] |= {"limits": limits, "source": source}
    if not clips:  # a checkpoint made before every policy clipped
        step = {"registry_name": CLIP_STEPS[0], "config": ClipJointTargetsStep(limits, source).get_config()}
        post["steps"].insert(max(len(post["steps"]) - 1, 0), step)
    config = json.loads((checkpoint / "config.json").read_text())
    config |= {"joint_limits": limits, "joint_limits_file": source}
    pre = with_camera_resize(checkpoint, config)
    with atomic_folder(output_dir, create=False) as tmp:
        shutil.copytree(checkpoint, tmp)
        write_json(tmp / POSTPROCESSOR, post)
        if pre is not None:
            write_json(tmp / PREPROCESSOR, pre)
        write_json(tmp / "config.json", config, indent=4)
    return previous


def with_camera_resize(checkpoint: Path, config: dict) -> dict | None:
    """The checkpoint's saved preprocessor with a `so101_resize_cameras` step added (sizes from config.json's
    camera features, the mode and tolerance its config holds or the defaults) after the camera check, or after the
    rename; None when it has the step already or there is no preprocessor."""
    path = checkpoint / PREPROCESSOR
    if not path.is_file():
        return None
    pre = json.loads(path.read_text())
    names = [step.get("registry_name") for step in pre["steps"]]
    if RESIZE_STEP in names:
        return None
    visual = {
        key: feature["shape"]
        for key, feature in (config.get("input_features") or {}).items()
        if feature.get("type") == "VISUAL" and len(feature.get("shape", ())) == 3 and ".empty_camera_" not in key
    }
    step = ResizeCamerasStep(
        sizes={key: list(shape[-2:]) for key, shape in visual.items()},
        mode=config.get("camera_resize", "crop"),
        aspect_tolerance=config.get("camera_aspect_tolerance", 0.1),
        nearest_keys=sorted(key for key, shape in visual.items() if is_map_key(key, shape[0])),
    )
    after = next((i for i, n in enumerate(names) if n == "so101_require_cameras"), None)
    if after is None:
        after = next((i for i, n in enumerate(names) if n == "rename_observations_processor"), -1)
    pre["steps"].insert(after + 1, {"registry_name": RESIZE_STEP, "config": step.get_config()})
    return pre


@parser.wrap()
def joint_limits_main(cfg: JointLimitsCommandConfig) -> None:
    checkpoint = parser.get_path_arg("policy")
    if not checkpoint or not cfg.output_dir:
        raise ValueError(
            "so101-joint-limits needs --policy.path=<pretrained_model folder> and --output_dir=<new folder>"
        )
    limits, source = cfg.limits()
    previous = set_joint_limits(Path(checkpoint), Path(cfg.output_dir), limits, source)
    from so101_core import JOINT_NAMES

    print(f"joint limits from {source} (follower units: degrees, gripper 0-100)")
    print("| joint | checkpoint had | now |\n|---|---|---|")
    for i, name in enumerate(JOINT_NAMES):
        had = previous[i] if previous else "no clip"
        print(f"| {name} | {had} | {limits[i]} |")
    if previous is not None and [list(p) for p in TWIN_JOINT_LIMITS] == previous:
        print("(the checkpoint had the twin's MJCF ranges)")
    print(f"written: {cfg.output_dir}; roll it out with lerobot-rollout --policy.path={cfg.output_dir} ...")


def main() -> None:
    prepare_command_line()
    joint_limits_main()
