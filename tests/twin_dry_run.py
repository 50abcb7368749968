"""A command for the real SO-101 follower turned into its dry run in the twin, by exactly the substitutions
docs/real-so101.md lists (section 6), and the safety flags such a command must carry. Plain functions on a command's
words (`docs_commands.command_words`), shared by the tests that run the README's and the real-arm page's commands."""

from __future__ import annotations

import yaml

FOLLOWERS = ("so101_follower", "so100_follower")
LEADERS = ("so101_leader", "so100_leader")
TWIN_SIZE = (480, 640)  # (height, width): what the twin renders unless told otherwise


def flag(words: list[str], name: str) -> str | None:
    """The value of `--name=...` (the last one, as the parser reads it), or None."""
    found = [w.split("=", 1)[1] for w in words if w.startswith(f"--{name}=")]
    return found[-1] if found else None


def drives_the_follower(words: list[str]) -> bool:
    return flag(words, "robot.type") in FOLLOWERS


def require_safe(words: list[str]) -> None:
    """A command that drives the follower under a policy must cap each step's move and set its rate: a positive
    `--robot.max_relative_target` and an explicit `--fps`. AssertionError naming what is missing otherwise."""
    text = " ".join(words)
    cap = flag(words, "robot.max_relative_target")
    assert cap is not None, f"no --robot.max_relative_target: the follower may jump to any target: {text}"
    assert float(cap) > 0, f"--robot.max_relative_target={cap} is not a positive cap: {text}"
    assert flag(words, "fps") is not None, f"no --fps: the rate is LeRobot's default, not the one checked: {text}"


def twin_dry_run(words: list[str]) -> list[str]:
    """The follower command `words` with the page's substitutions: the twin's robot type, no serial port, the cameras
    by name (with the twin's image size when the cameras ask for another), `--robot.fps` equal to the command's rate,
    the leader replaced by the twin's scripted expert. Every other word is kept, in its place."""
    assert drives_the_follower(words), f"not a follower command: {' '.join(words)}"
    rate = flag(words, "fps") or flag(words, "dataset.fps")
    out: list[str] = []
    for word in words:
        name, _, value = word.partition("=")
        if name == "--robot.type":
            out.append("--robot.type=so101_twin")
        elif name in ("--robot.port", "--teleop.port", "--teleop.id"):
            continue
        elif name == "--robot.cameras":
            out += _twin_cameras(value)
        elif name == "--teleop.type":
            assert value in LEADERS, f"no twin substitute for --teleop.type={value}"
            out.append("--teleop.type=so101_twin_expert")
        else:
            out.append(word)
    if rate is not None:
        out.append(f"--robot.fps={rate}")
    return out


def _twin_cameras(value: str) -> list[str]:
    cameras = yaml.safe_load(value)
    assert isinstance(cameras, dict) and cameras, f"--robot.cameras={value} is not a mapping of cameras"
    flags = [f"--robot.cameras=[{','.join(cameras)}]"]
    sizes = {(int(c["height"]), int(c["width"])) for c in cameras.values() if "height" in c and "width" in c}
    if sizes and sizes != {TWIN_SIZE}:
        assert len(sizes) == 1, f"the twin renders every camera at one size; these ask for {sorted(sizes)}"
        ((height, width),) = sizes
        flags += [f"--robot.observation_height={height}", f"--robot.observation_width={width}"]
    return flags
