"""The stock lerobot-eval on the twin's LiftCube as the tables run it: its command line, and the --env.* flags that
give a checkpoint the inputs it was trained on."""

import json
import sys
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def env_flags(checkpoint: Path) -> list[str]:
    """lerobot-eval's --env.* flags that give this checkpoint the inputs it was trained on."""
    features = json.loads((checkpoint / "config.json").read_text())["input_features"]
    cameras, size, depth, segmentation = [], None, False, False
    for key, feature in features.items():
        if not key.startswith("observation.images."):
            continue
        name, shape = key.removeprefix("observation.images."), feature["shape"]
        camera = name.removesuffix("_depth").removesuffix("_segmentation")
        depth |= name.endswith("_depth")
        segmentation |= name.endswith("_segmentation")
        if camera != name or (len(shape) == 3 and shape[0] == 3):  # a map's camera renders too, at the map's size
            if camera not in cameras:
                cameras.append(camera)
            size = shape[1:]
    if not cameras:
        raise ValueError(f"{checkpoint}: no camera inputs to derive the env from; give its flags after a '|'")
    return [
        f"--env.cameras=[{','.join(cameras)}]",
        f"--env.observation_height={size[0]}",
        f"--env.observation_width={size[1]}",
        f"--env.depth={str(depth).lower()}",
        f"--env.segmentation={str(segmentation).lower()}",
    ]


def eval_args(
    checkpoint: Path, flags: list[str], appearance: str, episodes: int, batch_size: int, seed: int, out: Path
) -> list[str]:
    """The stock lerobot-eval of `checkpoint` on the twin's LiftCube on the CPU, `flags` giving the env its inputs:
    `episodes` cube poses from `seed` in `appearance`, `batch_size` twins stepped together, the output in `out`
    (benchmarks/twin_policies.py, examples/segvla_twin.py and robust_twin.py evaluate with it)."""
    return [
        str(VENV_BIN / "lerobot-eval"),
        f"--policy.path={checkpoint}",
        "--env.type=so101_twin",
        "--env.task=LiftCube",
        *flags,
        f"--env.appearance={appearance}",
        f"--eval.n_episodes={episodes}",
        f"--eval.batch_size={batch_size}",
        "--eval.use_async_envs=false",
        "--policy.device=cpu",
        f"--seed={seed}",
        f"--output_dir={out}",
    ]
