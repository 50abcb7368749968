"""The work of `so101-seg-autolabel`: open and check the recording, fit the cameras, then label it episode by
episode."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from so101_core import MOTOR_KEYS, segmentation_from_code
from so101_run_infra.atomic import write_json
from so101_run_infra.cli import SettingsRefused
from so101_segmenter.classes import BACKGROUND, CUBE, TABLE, UNLABELED
from so101_segmenter.dataset_index import DatasetIndex, FrameRecord, disparity_png
from so101_segmenter.viz import colorize, save_grid

from .autolabel_config import CAMERA_FIT, EPISODES, AutolabelConfig
from .autolabel_fit import fit_cameras, fit_cube, fit_held, fit_standing
from .autolabel_scene import LabelScene
from .autolabel_scores import boundary_band, class_band, confusion, iou_report
from .cube_colour import CubeColour
from .grasp import BEFORE_GRASP, NO_GRASP, SKIP_REASONS, EpisodeGrasp, find_grasp


def _image_key(camera: str) -> str:
    return f"observation.images.{camera}"


@dataclass
class Recording:
    """A LeRobot recording of an SO-101, checked for what labelling needs: joint states and the cameras."""

    dataset: object  # lerobot.datasets.LeRobotDataset
    cameras: list[str]
    sizes: dict[str, tuple[int, int]]  # camera -> (height, width)
    bounds: dict[int, tuple[int, int]]  # episode -> its frames' dataset indices [start, stop)
    joints: dict[int, np.ndarray]  # episode -> (T, 6) recorded joint positions, follower units
    truth: dict[str, str]  # camera -> the recording's own segmentation feature, where it has one (the twin's)

    @classmethod
    def open(cls, cfg: AutolabelConfig) -> Recording:
        from lerobot.datasets import LeRobotDataset

        root = cfg.dataset.root
        if root is not None and not (Path(root) / "meta" / "info.json").is_file():
            raise FileNotFoundError(f"--dataset.root={root} is not a LeRobot dataset: {root}/meta/info.json is missing")
        dataset = LeRobotDataset(cfg.dataset.repo_id or "local/recording", root=root)
        features = dataset.meta.features
        state = features.get("observation.state")
        if state is None or list(state.get("names") or []) != list(MOTOR_KEYS):
            found = "no observation.state" if state is None else f"observation.state names {state.get('names')}"
            raise SettingsRefused(
                f"{root or cfg.dataset.repo_id}: {found}; the labels are rendered at each frame's joint positions, "
                f"so the recording needs an SO-101 follower's state {list(MOTOR_KEYS)}"
            )
        missing = [c for c in cfg.cameras if _image_key(c) not in features]
        if missing:
            present = sorted(k.removeprefix("observation.images.") for k in dataset.meta.camera_keys)
            raise SettingsRefused(
                f"--cameras {missing}: the recording has no such camera (it has {present}); the twin can place only "
                "its 'front' and 'wrist' cameras: record with those names (--robot.cameras / --rename_map) or "
                "label the cameras it has"
            )
        total = dataset.meta.total_episodes
        episodes = cfg.dataset.episodes if cfg.dataset.episodes is not None else list(range(total))
        if bad := [e for e in episodes if not 0 <= e < total]:
            raise SettingsRefused(f"--dataset.episodes {bad} are not in the recording's {total} episodes")
        table = dataset.meta.episodes
        bounds = {e: (int(table["dataset_from_index"][e]), int(table["dataset_to_index"][e])) for e in episodes}
        joints = {}
        for e, (start, stop) in bounds.items():
            states = dataset.hf_dataset[start:stop]["observation.state"]
            joints[e] = np.stack([np.asarray(s, dtype=np.float64) for s in states])
        sizes = {c: tuple(int(v) for v in features[_image_key(c)]["shape"][:2]) for c in cfg.cameras}
        truth = {c: f"{_image_key(c)}_segmentation" for c in cfg.cameras if f"{_image_key(c)}_segmentation" in features}
        plan_episodes(cfg, joints)  # a recording with no grasp at all is refused here, before any work
        return cls(dataset, list(cfg.cameras), sizes, bounds, joints, truth)

    def frame(self, index: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """camera -> RGB (H, W, 3) uint8, and camera -> the recording's own class ids where it has them."""
        item = self.dataset[index]
        rgb = {c: (item[_image_key(c)].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for c in self.cameras}
        truth = {c: segmentation_from_code(item[k].squeeze(0).numpy(), "auto").astype(np.uint8)
                 for c, k in self.truth.items()}  # fmt: skip
        return rgb, truth


class Segmenter:
    """The current segmenter, whose predictions the fits compare with."""

    def __init__(self, path: str, threads: int):
        from so101_segmenter.infer import segment
        from so101_segmenter.model import load_segmenter
        from so101_segmenter.shipped import is_shipped, resolve_init_from

        torch.set_num_threads(threads)
        self.model = load_segmenter(resolve_init_from(path) if is_shipped(path) else path).eval()
        self._segment = segment

    def __call__(self, rgb: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {c: self._segment(self.model, image, image.shape[:2]) for c, image in rgb.items()}


def plan_episodes(cfg: AutolabelConfig, joints: dict[int, np.ndarray]) -> dict[int, EpisodeGrasp]:
    """Each episode's grasp, from its gripper positions; refuses a recording with none."""
    plans = {e: find_grasp(q[:, 5], cfg.grasp) for e, q in joints.items()}
    if all(p.grasp is None for p in plans.values()):
        raise SettingsRefused(
            f"none of the {len(plans)} episodes shows a grasp (the gripper never stops closed short of shut, "
            f"--grasp.closed_below={cfg.grasp.closed_below}): the cube's place cannot be found, so nothing can be "
            "labelled. Is this a pick recording, and the gripper in the follower's 0-100 units?"
        )
    return plans


def camera_fit(cfg: AutolabelConfig, recording: Recording, scene: LabelScene, segmenter, plans) -> dict:
    """The cameras' offsets, fitted once per output folder (camera_fit.json) and applied to `scene`."""
    path = cfg.output_dir / CAMERA_FIT
    if path.is_file():
        fitted = json.loads(path.read_text())
    else:
        usable = [(e, t) for e, p in plans.items() for t in range(p.length) if p.reason(t) is None]
        picks = np.linspace(0, len(usable) - 1, min(cfg.fit.camera_frames, len(usable))).astype(int)
        chosen = [usable[i] for i in picks]
        samples = []
        for e, t in chosen:
            rgb, _ = recording.frame(recording.bounds[e][0] + t)
            samples.append((scene.reading(recording.joints[e][t]), segmenter(rgb)))
        offsets, before, after = fit_cameras(scene, samples, cfg.fit)
        fitted = {"offsets": {c: o.tolist() for c, o in offsets.items()}, "agreement_before": before,
                  "agreement_after": after, "frames": len(samples)}  # fmt: skip
        write_json(path, fitted)
    scene.set_camera_offsets({c: np.asarray(o) for c, o in fitted["offsets"].items()})
    return fitted


def _cube_shift(cfg, recording, scene, segmenter, episode: int, plan: EpisodeGrasp, joints) -> dict:
    if not cfg.fit.cube or segmenter is None:
        return {"shift_m": [0.0, 0.0]}
    frames = [t for t in range(plan.pushed[1], plan.closing) if t % cfg.frame_stride == 0] or [plan.closing]
    frames = _spread(frames, cfg.fit.cube_frames)
    samples = [(joints[t], segmenter(recording.frame(recording.bounds[episode][0] + t)[0])) for t in frames]
    shift, before, after = fit_cube(scene, joints[plan.grasp], samples, cfg.fit)
    return {"shift_m": list(shift), "agreement_before": before, "agreement_after": after}


def _spread(items: list, count: int) -> list:
    return [items[i] for i in np.linspace(0, len(items) - 1, min(count, len(items))).astype(int)] if items else []


def _colour_samples(recording, first: int, frames: list[int], colour: CubeColour, count: int) -> list:
    """(frame, camera -> P(cube) per pixel) for `count` of `frames` spread over them."""
    samples = []
    for t in _spread(frames, count):
        rgb, _ = recording.frame(first + t)
        samples.append((t, {cam: colour.probability(rgb[cam]) for cam in recording.cameras}))
    return samples


def _cube_colour(cfg, recording, scene, episode: int, plan: EpisodeGrasp, joints, poses) -> CubeColour:
    """The cube's colour in this episode, from its held frames posed as `poses` says."""
    centres, quats = poses
    colour = CubeColour()
    for t in _spread(list(range(plan.grasp, plan.lost or plan.length)), cfg.fit.colour_frames):
        rgb, _ = recording.frame(recording.bounds[episode][0] + t)
        rendered = scene.render(joints[t], centres[t], quats[t])
        for cam in recording.cameras:
            colour.add(rgb[cam], rendered[cam][0])
    return colour


def _held(cfg, recording, scene, episode: int, plan: EpisodeGrasp, joints, colour: CubeColour, start) -> dict:
    held = list(range(plan.grasp, plan.lost or plan.length))
    samples = _colour_samples(recording, recording.bounds[episode][0], held, colour, cfg.fit.colour_frames)
    shift, before, after = fit_held(scene, joints, plan, samples, start, cfg.fit.held_range)
    return {"shift_m": list(shift), "soft_iou_before": before, "soft_iou": after}


def _standing(cfg, recording, scene, episode: int, plan: EpisodeGrasp, joints, poses, colour: CubeColour) -> dict:
    """Where the cube stood until the arm touched it, by its colour learnt from the episode's held frames. When the
    fit is sure, `poses` (centres, quaternions) and `plan.pushed` are changed in place: the cube stands at the fitted
    pose until the arm touches it; the frames from then to the grasp are skipped if it then stood elsewhere. When it
    is not, every frame before the grasp is skipped (`plan.unsure`)."""
    centres, quats = poses
    first = recording.bounds[episode][0]
    # frames where the jaws are farther from the grasp than the search reaches and a cube's length more
    far = cfg.fit.standing_range_m + 0.02
    early = [t for t in range(plan.closing) if np.linalg.norm((scene.grasp_point(joints[t]) - centres[0])[:2]) > far]
    if not colour.ready or not early:
        plan.unsure = True
        return {"used": False, "why": "no cube pixels in the held frames" if not colour.ready else "no early frame"}
    samples = [(joints[t], p) for t, p in _colour_samples(recording, first, early, colour, cfg.fit.standing_frames)]
    pose, report = fit_standing(scene, (centres[0], quats[0]), samples, cfg.fit.standing_range_m)
    # again, finer, on every frame before the arm touches it there: the wrist camera's approach sees it large
    contact = scene.first_contact(joints, pose, plan.grasp, cfg.grasp.push_depth_m)
    if contact > 0:
        near = [(joints[t], p) for t, p in _colour_samples(recording, first, list(range(contact)), colour,
                                                             cfg.fit.standing_frames)]  # fmt: skip
        pose, fine = fit_standing(scene, pose, near, cfg.fit.standing_range_m / 3)
        report = fine | {"coarse": report}
    report["used"] = report["precision"] >= cfg.fit.standing_min_precision
    report["from_grasp_mm"] = [round(1000 * v, 1) for v in (pose[0] - centres[0])[:2]]
    plan.unsure = not report["used"]
    if report["used"]:
        contact = scene.first_contact(joints, pose, plan.grasp, cfg.grasp.push_depth_m)
        yaw = 2 * np.arctan2(np.linalg.norm(pose[1][1:] * quats[0][0] - quats[0][1:] * pose[1][0]), pose[1] @ quats[0])
        turned = abs((np.rad2deg(yaw) + 45) % 90 - 45) > 10
        moved = turned or np.linalg.norm(pose[0] - centres[0]) > cfg.fit.standing_same_m
        centres[:contact], quats[:contact] = pose
        plan.pushed = (contact, plan.grasp) if moved else (0, 0)
        report |= {"contact": contact, "moved": bool(moved)}
    return report


def label_episode(cfg, recording, scene, segmenter, index: DatasetIndex, episode: int, plan: EpisodeGrasp) -> dict:
    """Write one episode's labelled frames; returns its stats (counts, confusions, per-frame scores)."""
    joints = scene.reading(recording.joints[episode])
    stats = {"episode": episode, "grasp": plan.grasp, "skipped": dict.fromkeys(SKIP_REASONS, 0), "frames": []}
    with_band, without_band = np.zeros((6, 6), np.int64), np.zeros((6, 6), np.int64)
    frames = range(0, plan.length, cfg.frame_stride)
    if plan.grasp is None:
        stats["skipped"][NO_GRASP] = len(frames)
        return stats | {"with_band": with_band.tolist(), "without_band": without_band.tolist()}
    plan.pushed = (0, scene.pushed_until(joints, plan, cfg.grasp) + 1)
    stats["cube_fit"] = _cube_shift(cfg, recording, scene, segmenter, episode, plan, joints)
    shift = tuple(stats["cube_fit"]["shift_m"])
    centres, quats = scene.cube_poses(joints, plan, shift)
    if cfg.fit.held or cfg.fit.standing:
        colour = _cube_colour(cfg, recording, scene, episode, plan, joints, (centres, quats))
        if cfg.fit.held and colour.ready:
            stats["held_fit"] = _held(cfg, recording, scene, episode, plan, joints, colour, shift)
            centres, quats = scene.cube_poses(joints, plan, tuple(stats["held_fit"]["shift_m"]))
        if cfg.fit.standing:
            standing = _standing(cfg, recording, scene, episode, plan, joints, (centres, quats), colour)
            stats["standing_fit"] = standing
    records, start = [], time.perf_counter()
    for t in frames:
        if (reason := plan.reason(t)) is None and t < plan.grasp and not cfg.label_before_grasp:
            reason = BEFORE_GRASP
        if reason is not None:
            stats["skipped"][reason] += 1
            continue
        rgb, truth = recording.frame(recording.bounds[episode][0] + t)
        predicted = segmenter(rgb) if segmenter is not None and cfg.unlabel_unknown_objects else {}
        rendered = scene.render(joints[t], centres[t], quats[t])
        stats["labelled_steps"] = stats.get("labelled_steps", 0) + 1
        for cam in recording.cameras:
            mask, depth = rendered[cam]
            label = mask.copy()
            label[boundary_band(mask, cfg.boundary_px) | class_band(mask, CUBE, cfg.cube_band_px)] = UNLABELED
            if cam in predicted:
                label[(mask == TABLE) & (predicted[cam] == BACKGROUND)] = UNLABELED
            name = f"ep{episode:06d}_{t:04d}_{cam}"
            paths = {k: f"{k}/{name}.png" for k in ("images", "masks", "disparity", "truth")}
            index.write_png(paths["images"], rgb[cam])
            index.write_png(paths["masks"], label)
            index.write_png(paths["disparity"], disparity_png(1.0 / np.maximum(depth, 1e-6)))
            records.append(FrameRecord(image=paths["images"], mask=paths["masks"], grasp=plan.held(t),
                                       episode=episode, camera=cam, disparity=paths["disparity"]))  # fmt: skip
            if cam in truth:
                index.write_png(paths["truth"], truth[cam])
                frame_conf = confusion(label, truth[cam])
                with_band += frame_conf
                without_band += confusion(mask, truth[cam])
                scores = iou_report(frame_conf)
                stats["frames"].append([name, scores["miou"], scores["per_class_iou"]["cube"]])
    stats["seconds"] = time.perf_counter() - start
    stats["labelled"] = len(records)
    index.add(records)
    return stats | {"with_band": with_band.tolist(), "without_band": without_band.tolist()}


def label_recording(cfg: AutolabelConfig, recording: Recording, progress) -> dict:
    scene = LabelScene(recording.sizes, cfg.cube_size_m, cfg.table_height_m, cfg.errors)
    try:
        plans = plan_episodes(cfg, {e: scene.reading(q) for e, q in recording.joints.items()})
        wants = cfg.fit.cameras or cfg.fit.cube or cfg.unlabel_unknown_objects
        segmenter = Segmenter(cfg.segmenter_path, cfg.threads) if wants else None
        fitted = camera_fit(cfg, recording, scene, segmenter, plans) if cfg.fit.cameras else None
        index = DatasetIndex.open_or_create(cfg.output_dir)
        done = {r.episode for r in index.records}
        folder = cfg.output_dir / EPISODES
        for episode in progress([e for e in plans if e not in done], desc="label episodes", unit="ep"):
            stats = label_episode(cfg, recording, scene, segmenter, index, episode, plans[episode])
            write_json(folder / f"ep{episode:06d}.json", stats)  # before the index names the episode: never lost
            index.save()
    finally:
        scene.close()
    episodes = [json.loads((folder / f"ep{e:06d}.json").read_text()) for e in plans]
    report = aggregate(episodes, fitted)
    if cfg.grid_frames:
        report["grid"] = str(write_grid(cfg, episodes))
    return report


def aggregate(episodes: list[dict], fitted: dict | None) -> dict:
    skipped = {r: sum(e["skipped"].get(r, 0) for e in episodes) for r in SKIP_REASONS}
    images = sum(e.get("labelled", 0) for e in episodes)
    labelled_steps = sum(e.get("labelled_steps", 0) for e in episodes)
    considered = labelled_steps + sum(skipped.values())
    seconds = sum(e.get("seconds", 0.0) for e in episodes)
    report = {
        "episodes": len(episodes),
        "episodes_with_grasp": sum(e["grasp"] is not None for e in episodes),
        "frames_considered": considered,
        "frames_labelled": labelled_steps,
        "images_labelled": images,
        "frames_skipped": skipped,
        "share_labelled": labelled_steps / max(1, considered),
        "ms_per_frame": 1000 * seconds / max(1, images),
        "camera_fit": fitted,
        "cube_shift_mm": [[round(1000 * v, 1) for v in e["cube_fit"]["shift_m"]] for e in episodes if "cube_fit" in e],
    }
    with_band = np.sum([np.asarray(e["with_band"]) for e in episodes], axis=0)
    if with_band.sum():
        without_band = np.sum([np.asarray(e["without_band"]) for e in episodes], axis=0)
        report["label_iou"] = {"with_band": iou_report(with_band), "without_band": iou_report(without_band)}
    return report


def write_grid(cfg: AutolabelConfig, episodes: list[dict]) -> Path:
    """RGB | auto-label | true label for frames spread over the labelled ones, then the worst by mIoU."""
    scored = [f for e in episodes for f in e["frames"]]
    root = cfg.output_dir
    if not scored:  # no truth to rank by: spread over the index
        names = [Path(r.image).stem for r in DatasetIndex.load(root).records]
        scored = [[n, None, None] for n in names]
    half = max(1, cfg.grid_frames // 2)
    spread = [scored[i] for i in np.linspace(0, len(scored) - 1, min(half, len(scored))).astype(int)]
    worst = sorted((f for f in scored if f[1] is not None), key=lambda f: f[1])[:half]
    rows = []
    from PIL import Image

    for name, _, _ in spread + worst:
        row = [np.asarray(Image.open(root / "images" / f"{name}.png").convert("RGB")),
               colorize(np.asarray(Image.open(root / "masks" / f"{name}.png")))]  # fmt: skip
        if (root / "truth" / f"{name}.png").is_file():
            row.append(colorize(np.asarray(Image.open(root / "truth" / f"{name}.png"))))
        rows.append(row)
    title = f"{len(spread)} frames spread over the labelled ones, then the {len(worst)} worst by mIoU"
    title += " (unlabeled: black)"
    columns = ["RGB", "auto-label", "true label"]
    return save_grid(root / "autolabel_grid.png", rows, scale=2, columns=columns, title=title)
