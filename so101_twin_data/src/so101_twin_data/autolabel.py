"""`so101-seg-autolabel`: segmentation and disparity labels for a recording of your own scene, rendered by the twin.

A user records demonstrations with the leader arm anyway; each frame comes with the follower's joint positions, and
the cameras stand where the twin's do (`so101-camera-align`). So the twin labels those frames itself: the arm and
both fingers from the joint positions, the table from the camera's pose, the cube from the grasp (`grasp.py`: it
stood where the jaws closed on it, then moved with them; `autolabel_scene.py`). What the joints cannot say, each
camera's exact pose and the cube's place along the jaws, is fitted to the current segmenter (`autolabel_fit.py`).

    so101-seg-autolabel --dataset.repo_id=local/my_scene --dataset.root=data/my_scene --output_dir=outputs/my_labels
    so101-seg-train --data.path=outputs/my_labels --model.init_from=shipped --model.depth_head=true ...

It writes the folder `so101-seg-render` writes (index.json, images/, masks/, disparity/), so `so101-seg-train` reads
it unchanged, plus `autolabel_report.json` (frames labelled and skipped, with the reason, the fits, the time per
frame, and, where the recording holds the twin's own segmentation, the labels' IoU against it), `truth/` (that
segmentation, for the comparison) and `autolabel_grid.png` (RGB | auto-label | true label, the worst frames last).
A band of `--boundary_px` pixels along every class boundary is left unlabeled (class 0, which training ignores): it
absorbs the last millimetres of calibration. Frames it cannot label with confidence are skipped: no grasp found in
the episode, the cube pushed before the grasp, the cube dropped after it. Episodes are written whole and a killed
run resumes; run again over its finished output with the same settings it says so and exits.
"""

import json
import logging
import time
from pathlib import Path

from lerobot.configs import parser
from tqdm import tqdm

from so101_run_infra.atomic import write_json
from so101_run_infra.cli import OutputRefused, prepare_command_line
from so101_run_infra.runs import config_differences, with_defaults

from .autolabel_config import REPORT, SETTINGS, AutolabelConfig, RecordingConfig

log = logging.getLogger(__name__)


def saved_with_defaults(saved: dict) -> dict:
    """Saved settings, with every setting added since they were written at its default (which keeps the labels as
    they were made then)."""
    defaults = AutolabelConfig(dataset=RecordingConfig(repo_id="-"), output_dir=Path("-")).settings()
    # the colour fits, on by default now, did not exist before `fit.held` and `fit.standing` were saved: such labels
    # were made without them
    defaults["fit"] |= {"held": False, "standing": False}
    return with_defaults(saved, defaults)


def check_output(cfg: AutolabelConfig) -> bool:
    """True when `output_dir` already holds this labelling, finished; refuses one made with other settings or a
    folder this command did not write. A partial labelling with the same settings is resumed (False)."""
    out = cfg.output_dir
    if not out.exists() or not any(out.iterdir()):
        return False
    saved = out / SETTINGS
    if not saved.is_file():
        raise OutputRefused(
            f"--output_dir {out} holds files so101-seg-autolabel did not write ({SETTINGS} is missing): choose "
            "another --output_dir"
        )
    differences = config_differences(saved_with_defaults(json.loads(saved.read_text())), cfg.settings())
    if differences:
        raise OutputRefused(
            f"--output_dir {out} holds labels made with other settings ({'; '.join(differences)}): give another "
            "--output_dir, or delete that folder to label again"
        )
    return (out / REPORT).is_file()


def main_flow(cfg: AutolabelConfig) -> dict:
    from .autolabel_run import Recording, label_recording

    if check_output(cfg):
        report = json.loads((cfg.output_dir / REPORT).read_text())
        done = report["frames_labelled"]
        print(f"{cfg.output_dir}: already labelled with these settings ({done} frames); nothing to do")
        return report
    recording = Recording.open(cfg)  # every refusal (no joint state, a camera missing, no grasp) before any work
    cfg.output_dir.mkdir(parents=True, exist_ok=True)
    write_json(cfg.output_dir / SETTINGS, cfg.settings())
    start = time.perf_counter()
    report = label_recording(cfg, recording, progress=tqdm)
    report["seconds"] = round(time.perf_counter() - start, 1)
    write_json(cfg.output_dir / REPORT, report)
    print(summary(report))
    return report


def summary(report: dict) -> str:
    skipped = ", ".join(f"{n} {reason}" for reason, n in report["frames_skipped"].items() if n) or "none"
    lines = [
        f"labelled {report['frames_labelled']} of {report['frames_considered']} frames "
        f"({report['share_labelled']:.0%}; skipped: {skipped}); {report['ms_per_frame']:.1f} ms a frame"
    ]
    for name in ("with_band", "without_band"):
        scores = report.get("label_iou", {}).get(name)
        if scores:
            per = ", ".join(f"{k} {v:.3f}" for k, v in scores["per_class_iou"].items() if v is not None)
            lines.append(f"labels against the recording's segmentation, {name.replace('_', ' ')}: mIoU "
                         f"{scores['miou']:.3f} ({per})")  # fmt: skip
    return "\n".join(lines)


@parser.wrap()
def autolabel_cli(cfg: AutolabelConfig) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return main_flow(cfg)


def main() -> None:
    prepare_command_line()
    autolabel_cli()


__all__ = ["AutolabelConfig", "RecordingConfig"]
