"""Render RGB frames and ground-truth class masks from the SO-101 twin, with domain randomisation.

Each episode resets the twin from its own seed, plays the scripted expert (approach, descend, close, lift) with a
perturbed speed and joint offsets, and keeps a few frames at random steps. Before each kept frame the twin's
appearance (`lerobot_env_so101_twin.appearance`: lights, colours, table texture, distractors, camera poses and fields
of view) is redrawn over `RandomizationConfig`'s ranges, wider than `--env.appearance=shifted`; after rendering, the
RGB image gets per-class procedural texture, sensor noise and blur, so a model trained on it cannot key on the
twin's flat colours. The masks come from MuJoCo's segmentation pass, so they are exact whatever the colours; beside
them each frame's disparity (the reciprocal of MuJoCo's depth, `disparity/`), the target of the depth head.

No randomised pixel has the hue `--env.appearance=unseen` keeps to itself: the scene's colours are folded out of
that band when drawn, and the finished image's pixels once more (`hue_band`), since shading and image-space
textures can make that hue from others.

Output is the dataset layout `coco_masks` writes (`images/`, `masks/`, `index.json`); rendering resumes from
the episodes `index.json` already lists.

    so101-seg-render --output_dir=data/sim_train --episodes=400 --frames_per_episode=6 --height=84 --width=84
"""

import json
import logging
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
from lerobot.configs import parser
from PIL import Image, ImageFilter
from tqdm import tqdm

from so101_run_infra.atomic import write_json
from so101_run_infra.cli import OutputRefused, prepare_command_line
from so101_run_infra.runs import config_differences
from so101_segmenter.classes import NUM_CLASSES
from so101_segmenter.dataset_index import DatasetIndex, FrameRecord, disparity_png
from so101_segmenter.hue_band import HueBand, fold_uint8

RENDER_SETTINGS = "render_settings.json"  # what the frames were rendered with, checked on every run
log = logging.getLogger(__name__)


@dataclass
class RandomizationConfig:
    """The segmenter's randomisation: the twin's scene appearance (`lerobot_env_so101_twin.appearance`, the same
    code as `--env.appearance=shifted`, over wider ranges and redrawn per frame), then image-space noise."""

    light_intensity: tuple[float, float] = (0.15, 0.9)
    ambient: tuple[float, float] = (0.05, 0.5)
    light_xy: float = 1.0  # metres the key light moves around the arm
    colour_jitter: float = 0.35  # how far an object's colour may move from its default (per channel, 0-1 scale)
    random_colour_prob: float = 0.5  # chance an object gets an entirely random colour instead
    camera_pos_std: float = 0.01  # metres
    camera_rot_std_deg: float = 3.0
    fovy_std_deg: float = 3.0
    distractors: tuple[int, int] = (0, 4)  # objects of other shapes and colours on the table (class background)
    table_texture_prob: float = 0.7  # the table top textured in the renderer
    texture_prob: float = 0.6  # chance each class region gets a procedural texture in image space
    noise_std: tuple[float, float] = (0.0, 8.0)  # sensor noise, in 0-255 units
    blur_prob: float = 0.3

    def scene_ranges(self):
        from lerobot_env_so101_twin.appearance import AppearanceRanges

        # the fields named as the twin's ranges are those ranges; the rest of the twin's keep their defaults
        shared = {f.name: getattr(self, f.name) for f in fields(AppearanceRanges) if hasattr(self, f.name)}
        return AppearanceRanges(**shared, headlight_ambient=self.ambient, headlight_diffuse=(0.1, 0.6))


def _smooth_noise(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Low-frequency noise in [0, 1]: a small random grid upsampled bicubically."""
    cells = int(rng.integers(2, 9))
    grid = Image.fromarray((rng.random((cells, cells)) * 255).astype(np.uint8))
    return np.asarray(grid.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32) / 255.0


def _pattern(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A texture-like multiplicative field around 1: blotches, stripes or a checkerboard."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    kind = rng.integers(3)
    if kind == 0:
        field = _smooth_noise(rng, height, width)
    elif kind == 1:
        angle, period = rng.uniform(0, np.pi), rng.uniform(3, max(4.0, width / 4))
        field = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
    else:
        period = rng.uniform(3, max(4.0, width / 4))
        field = ((np.floor(xx / period) + np.floor(yy / period)) % 2).astype(np.float32)
    strength = rng.uniform(0.1, 0.45)
    return 1.0 + strength * (field - 0.5) * 2


def excluded_band() -> HueBand:
    """The hue band of the twin's `unseen` look, which no randomised frame may show."""
    from lerobot_env_so101_twin.appearance import AppearanceRanges

    ranges = AppearanceRanges()
    return HueBand(*ranges.unseen_hue, ranges.unseen_min_saturation)


def postprocess_rgb(
    rgb: np.ndarray, mask: np.ndarray, rng: np.random.Generator, config: RandomizationConfig
) -> np.ndarray:
    """Image-space randomisation the renderer cannot do: per-class textures, sensor noise, blur; then every pixel
    folded out of `unseen`'s hue band."""
    height, width = mask.shape
    img = rgb.astype(np.float32)
    for cls in np.unique(mask):
        if rng.random() < config.texture_prob:
            region = mask == cls
            img[region] *= _pattern(rng, height, width)[region][:, None]
    img += rng.normal(0.0, rng.uniform(*config.noise_std), img.shape)
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    if rng.random() < config.blur_prob:
        out = out.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 1.0)) * max(1.0, width / 160)))
    return fold_uint8(np.asarray(out), excluded_band())


def render_episode(twin, seed: int, frames: int, cameras: list[str], dr: RandomizationConfig | None):
    """Yield (camera, rgb, mask, disparity, grasp, step) for `frames` random steps of one expert episode; `dr=None`
    keeps the twin's own look of the episode (e.g. `unseen`) with no redraw and no image-space randomisation."""
    from lerobot_env_so101_twin.expert import ScriptedExpert

    rng = np.random.default_rng(seed)
    twin.reset(seed)
    expert = ScriptedExpert(twin, hover_height=rng.uniform(0.03, 0.09), speed=rng.uniform(0.7, 1.4))
    # Steady per-episode joint offsets: poses the exact plan never visits (near misses, tilted grasps).
    offset = np.concatenate([rng.normal(0.0, 2.5, 5), [0.0]])
    total = int(5.5 / expert.speed * twin.config.fps)
    keep = set(rng.choice(total, size=min(frames, total), replace=False).tolist())
    for step in range(total):
        twin.apply_action(expert.action() + offset)
        twin.step()
        if step not in keep:
            continue
        if dr is not None:
            twin.redraw_appearance(rng)
        rendered = twin.render()
        grasp = twin.is_grasped()
        for cam in cameras:
            frame = rendered[cam]
            rgb = frame.rgb if dr is None else postprocess_rgb(frame.rgb, frame.segmentation, rng, dr)
            yield cam, rgb, frame.segmentation, 1.0 / np.maximum(frame.depth, 1e-6), grasp, step


def _write_frame(
    index: DatasetIndex, ep: int, cam: str, rgb: np.ndarray, mask: np.ndarray, disparity: np.ndarray, grasp, step: int
) -> FrameRecord:
    """One rendered camera frame's image, mask and disparity PNGs, and its record (not yet in the index)."""
    name = f"ep{ep:06d}_{step:04d}_{cam}"
    image_rel, mask_rel, disparity_rel = f"images/{name}.png", f"masks/{name}.png", f"disparity/{name}.png"
    index.write_png(image_rel, rgb)
    index.write_png(mask_rel, mask)
    index.write_png(disparity_rel, disparity_png(disparity))
    return FrameRecord(
        image=image_rel, mask=mask_rel, grasp=bool(grasp), episode=ep, camera=cam, disparity=disparity_rel
    )


def render_dataset(
    output_dir: str | os.PathLike,
    episodes: int,
    frames_per_episode: int,
    height: int = 84,
    width: int = 84,
    cameras: tuple[str, ...] = ("wrist", "front"),
    seed: int = 0,
    randomization: RandomizationConfig | None = None,
    appearance: str = "randomised",
    look_seed: int | None = None,
) -> DatasetIndex:
    """Render `episodes` episodes (episode i uses seed `seed + i`) into `output_dir`; resumes a partial run.

    `appearance="randomised"` redraws the look per frame over `randomization` (training data); a twin appearance
    level (`none`, `shifted`, `unseen`) keeps that level's look of each episode, as lerobot-eval shows it, with no
    image-space randomisation (test data: how the segmenter does in a look it was not trained on); `look_seed` then
    holds one look of that level for every episode (a user's own scene)."""
    from lerobot_env_so101_twin.simulation import TwinConfig, TwinSimulation

    _check_render_args(episodes, frames_per_episode, appearance, look_seed)
    dr = randomization or RandomizationConfig()
    settings = {"frames_per_episode": frames_per_episode, "height": height, "width": width, "cameras": list(cameras),
                "seed": seed, "appearance": appearance, "look_seed": look_seed,
                "randomization": asdict(dr) if appearance == "randomised" else None}  # fmt: skip
    check_render_output(Path(output_dir), settings)
    index = DatasetIndex.open_or_create(output_dir)
    done = {r.episode for r in index.records if r.episode is not None}
    todo = [seed + i for i in range(episodes) if seed + i not in done]
    if not todo:
        print(f"{output_dir}: already rendered with these settings ({len(done)} episodes); nothing to do")
        return index
    if done:
        log.info("resuming %s: %d episodes already rendered, %d to go", output_dir, len(done), len(todo))
    config = TwinConfig(
        cameras=dict.fromkeys(cameras, (height, width)),
        segmentation=True,
        depth=True,
        # wider than the task's spawn region: the segmenter must also see cubes the expert would not start from
        cube_distance=(0.14, 0.30),
        cube_bearing_deg=(-40.0, 40.0),
        cube_yaw_deg=(-90.0, 90.0),
        appearance="shifted" if appearance == "randomised" else appearance,
        **({"appearance_ranges": dr.scene_ranges()} if appearance == "randomised" else {}),
        look_seed=look_seed,
    )
    twin = TwinSimulation(config, seed=seed)
    try:
        for ep in tqdm(todo, desc="render episodes", unit="ep"):
            episode_dr = dr if appearance == "randomised" else None
            frames = render_episode(twin, ep, frames_per_episode, list(cameras), episode_dr)
            records = [_write_frame(index, ep, *frame) for frame in frames]
            # The index names an episode only once all its files exist, so an interrupted run redoes it whole.
            index.add(records)
            index.save()
    finally:
        twin.close()
    return index


def _check_render_args(episodes: int, frames_per_episode: int, appearance: str, look_seed: int | None) -> None:
    from lerobot_env_so101_twin.appearance import APPEARANCE_LEVELS

    if episodes < 1 or frames_per_episode < 1:
        raise ValueError(f"episodes and frames_per_episode must be >= 1, got {episodes}, {frames_per_episode}")
    if appearance != "randomised" and appearance not in APPEARANCE_LEVELS:
        raise ValueError(f"--appearance={appearance!r}: choose 'randomised' or one of {list(APPEARANCE_LEVELS)}")
    if look_seed is not None and appearance == "randomised":
        raise ValueError(
            "--look_seed holds one look of --appearance=shifted or unseen; 'randomised' redraws every frame"
        )


def check_render_output(output_dir: Path, settings: dict) -> None:
    """A new folder gets the settings (RENDER_SETTINGS); one rendered with the same settings is resumed or extended
    (more --episodes); one rendered with other settings, or holding files this command did not write, is refused
    before any frame is rendered: its episodes would mix with frames of another kind."""
    saved = output_dir / RENDER_SETTINGS
    settings = json.loads(json.dumps(settings))  # tuples -> lists, as the file reads back
    if saved.is_file():
        differences = config_differences(json.loads(saved.read_text()), settings)
        if differences:
            raise OutputRefused(
                f"{output_dir} holds frames rendered with other settings ({'; '.join(differences)}): choose another "
                "--output_dir, or remove that folder to render it again"
            )
        return
    if output_dir.exists() and any(output_dir.iterdir()):
        raise OutputRefused(
            f"{output_dir} holds files so101-seg-render did not write ({RENDER_SETTINGS} is missing): choose another "
            "--output_dir"
        )
    output_dir.mkdir(parents=True, exist_ok=True)
    write_json(saved, settings)


@dataclass
class SimFramesConfig:
    # dataset folder (images/, masks/, index.json); required
    output_dir: Path | None = None
    episodes: int = 100
    # random steps kept per episode and camera
    frames_per_episode: int = 6
    height: int = 84
    width: int = 84
    # twin cameras, e.g. '[wrist,front]'
    cameras: list[str] = field(default_factory=lambda: ["wrist", "front"])
    # first episode seed; use disjoint ranges for train/test
    seed: int = 0
    # "randomised": the look redrawn per frame over the segmenter's randomisation (training data); or a twin
    # appearance level, "none", "shifted" or "unseen", as lerobot-eval shows it (test data)
    appearance: str = "randomised"
    # with a twin appearance level: one look for every episode, drawn from this seed (a user's own scene); null: each
    # episode the look of its own seed
    look_seed: int | None = None

    def __post_init__(self):
        if self.output_dir is None:
            raise ValueError("--output_dir is required: the dataset folder to render into")


@parser.wrap()
def render_cli(cfg: SimFramesConfig) -> DatasetIndex:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    index = render_dataset(
        cfg.output_dir,
        cfg.episodes,
        cfg.frames_per_episode,
        cfg.height,
        cfg.width,
        tuple(cfg.cameras),
        cfg.seed,
        appearance=cfg.appearance,
        look_seed=cfg.look_seed,
    )
    counts = index.class_pixel_counts()
    share = {i: f"{c / max(counts.sum(), 1):.3f}" for i, c in enumerate(counts[:NUM_CLASSES])}
    log.info(
        "%s: %d frames (%d grasp); class pixel shares %s",
        cfg.output_dir,
        len(index.records),
        sum(r.grasp for r in index.records),
        share,
    )
    return index


def main() -> None:
    prepare_command_line()
    render_cli()


if __name__ == "__main__":
    main()
