"""The SO-101 follower's joints and cameras and the tasks the suite trains on, shared by the twin, the processors
and the policies (so a policy running on the real arm needs no simulator for them)."""

# Same motor names and order as LeRobot's `so101_follower` (robots/so_follower/so_follower.py).
JOINT_NAMES: tuple[str, ...] = (
    "shoulder_pan",
    "shoulder_lift",
    "elbow_flex",
    "wrist_flex",
    "wrist_roll",
    "gripper",
)
MOTOR_KEYS: tuple[str, ...] = tuple(f"{name}.pos" for name in JOINT_NAMES)
BODY_JOINTS: tuple[str, ...] = JOINT_NAMES[:5]  # degrees on the real follower (use_degrees=True)
GRIPPER_JOINT = "gripper"  # 0-100 on the real follower (MotorNormMode.RANGE_0_100)

CAMERA_NAMES: tuple[str, ...] = ("front", "wrist")
NATIVE_CAMERA_SIZE = (480, 640)  # (height, width), as the real follower's UVC cameras

TASKS: tuple[str, ...] = ("LiftCube", "ReachCube")
# The language prompt of each task: what the twin's env reports as `task_description` to `lerobot-eval`, and what
# demonstrations are recorded with (`--dataset.single_task`), so language-conditioned policies see the same string.
TASK_DESCRIPTIONS: dict[str, str] = {
    "LiftCube": "Pick up the red cube and lift it.",
    "ReachCube": "Reach the red cube.",
}
