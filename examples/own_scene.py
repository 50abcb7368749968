"""Your own scene, labelled by the twin: perception adapted to one look from the demonstrations recorded in it, with no
hand labelling, measured end to end, resuming where it stopped. The twin plays the user's scene and its `unseen` look
(held fixed by a look seed) plays the real one.

1. the demonstrations, N = 50 expert episodes in one fixed `unseen` look (configs/own_scene/record_look.yaml) and in
   the `unseen` family, a look per episode (record_family.yaml); N = 10 and 25 are their first episodes
2. test frames of each look (`so101-seg-render`, seeds 200000-200059, which no recording uses) and 20 exactly labelled
   frames per look, standing in for 20 hand-labelled ones
3. `so101-seg-autolabel` of the first N episodes, and its labels scored against the recording's own segmentation,
   also under the errors a real install has (camera mounts, joint readings, table height, cube size), one at a time;
   the rows measured before the labeller fitted the cube to its colour are kept as they were (`NO_COLOUR_FITS`)
4. the shipped segmenter as it is (zero-shot) and adapted (`so101-seg-train --config_path=<adapt_config>`), on each
   look's test frames: the adapted look's, and `none` and `shifted` (what it must not forget); for the policies, the
   fixed look's N = `policy_demos` labels with randomised frames replayed beside them, labelled twice with the colour
   fits: round 1 fits the cameras to the shipped segmenter, round 2 to round 1's
5. SegDepth from RGB alone: the checkpoints of `examples/robust_twin.py --config_dir=configs/own_scene
   --arms='[segdepth_rgbonly]'` (trained on the `shifted` recording with the shipped segmenter), each given an
   adapted segmenter (`so101-seg-swap`: before the colour fits, and round 2's) and evaluated with `lerobot-eval
   --seed=1000` beside themselves unchanged, in `none`, `shifted` and the fixed `unseen` look

    python examples/robust_twin.py --config_dir=configs/own_scene --arms='[segdepth_rgbonly]' \
        --output_dir=outputs/own_scene/zero_shot --archive_dir=docs/data/own_scene/zero_shot --action_error_arms='[]'
    python examples/own_scene.py --archive_dir=docs/data/own_scene

Every command's output goes to `<output_dir>/logs/`; `<output_dir>/results.json` holds the figures and
`archive_dir` keeps the small result files (a finished stage found there is not run again).
"""

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import draccus
from lerobot.configs import parser

from so101_devtools.stages import run_logged
from so101_devtools.twin_eval import env_flags, eval_args
from so101_run_infra.atomic import write_json
from so101_run_infra.cli import prepare_command_line
from so101_run_infra.stats import newcombe, wilson

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
KINDS = ("look", "family")
LOOKS = ("none", "shifted", "unseen")
POLICY_LOOKS = ("unseen_look", "none", "shifted")  # unseen_look: `unseen` held at the recordings' look seed
ARMS = ("zero_shot", "adapted", "adapted_r2")
# name -> so101-seg-autolabel --errors.* flags: one error of a real install at a time
ERRORS = {
    "camera_1cm": ["--errors.camera_pos_m=0.01"],
    "camera_2deg": ["--errors.camera_rot_deg=2"],
    "joints_2deg": ["--errors.joint_offset_deg=2"],
    "table_5mm_up": ["--errors.table_height_m=-0.005"],  # the table 5 mm higher than the twin believes
    "table_5mm_down": ["--errors.table_height_m=0.005"],
    "cube_10pct_larger": [f"--errors.cube_scale={1 / 1.1}"],  # the twin believes a cube 10% smaller than it is
}
# name -> so101-seg-autolabel flags: its fits switched, on the same demonstrations
VARIANTS = {
    "no_camera_fit": ["--fit.cameras=false"],
    "cube_fit": ["--fit.cube=true"],
}
# the rows measured before the cube was fitted to its colour (at its grasp pose from the start, held where the jaws'
# mean grasp puts it), kept as they are
NO_COLOUR_FITS = ["--fit.held=false", "--fit.standing=false"]


@dataclass
class OwnSceneConfig:
    # every stage's output, the logs and results.json
    output_dir: Path = Path("outputs/own_scene")
    # so101-twin-record configs of the demonstrations: one fixed look, and the look family
    record_configs: dict[str, Path] = field(
        default_factory=lambda: {kind: Path(f"configs/own_scene/record_{kind}.yaml") for kind in KINDS}
    )
    # the numbers of demonstrations the labels and the adapted segmenter are made from
    demos: list[int] = field(default_factory=lambda: [10, 25, 50])
    # so101-seg-train's config of the adapted segmenter
    adapt_config: Path = Path("configs/own_scene/segmenter_adapt.yaml")
    # measure the labels under each of ERRORS and VARIANTS, on this many demonstrations of the fixed look; 0: skip
    error_demos: int = 25
    # the SegDepth-from-RGB checkpoints: <zero_shot_dir>/segdepth_rgbonly_s<seed>/checkpoints/last/pretrained_model
    zero_shot_dir: Path = Path("outputs/own_scene/zero_shot")
    # its recipe (for its number of steps)
    zero_shot_config: Path = Path("configs/own_scene/segdepth_rgbonly.yaml")
    # where that run archives its evaluations in `none` and `shifted` (read instead of evaluating again)
    zero_shot_archive: Path = Path("docs/data/own_scene/zero_shot")
    # its training seeds
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    # the looks the policies are evaluated in, in this order (unseen_look: `unseen` at the recordings' look seed)
    policy_looks: list[str] = field(default_factory=lambda: list(POLICY_LOOKS))
    # the adapted segmenter the policies are given: the fixed look's, from this many demonstrations
    policy_demos: int = 25
    # lerobot-eval: cube poses per checkpoint and look, twins stepped together, and --seed (1000 reports)
    eval_episodes: int = 20
    # see eval_episodes
    eval_batch_size: int = 10
    # see eval_episodes
    eval_seed: int = 1000
    # a folder keeping every finished stage's result files (a few kB each): found there, a stage is not run again
    archive_dir: Path | None = None

    def __post_init__(self):
        if unknown := [look for look in self.policy_looks if look not in POLICY_LOOKS]:
            raise ValueError(f"--policy_looks {unknown}: choose from {list(POLICY_LOOKS)}")
        if self.policy_demos not in self.demos:
            raise ValueError(f"--policy_demos={self.policy_demos} must be one of --demos={self.demos}")

    def look_seed(self) -> int:
        with open(self.record_configs["look"]) as f:
            return int(draccus.load(dict, f)["robot"]["look_seed"])


def _run(cfg: OwnSceneConfig, args: list[str], name: str, desc: str) -> None:
    run_logged(args, cfg.output_dir / "logs" / f"{name}.log", desc)


def _kept(cfg: OwnSceneConfig, name: str, produce) -> dict:
    """The JSON result `name`: from the archive when there, else `produce()` (which writes it) and archived."""
    archived = cfg.archive_dir / name if cfg.archive_dir else None
    if archived is not None and archived.is_file():
        return json.loads(archived.read_text())
    result = produce()
    if archived is not None:
        write_json(archived, result)
    return result


def recording(cfg: OwnSceneConfig, kind: str) -> tuple[str, Path]:
    with open(cfg.record_configs[kind]) as f:
        dataset = draccus.load(dict, f)["dataset"]
    root = Path(dataset["root"])
    if not (root / "meta" / "info.json").is_file():
        _run(cfg, [str(VENV_BIN / "so101-twin-record"), f"--config_path={cfg.record_configs[kind]}"], f"record_{kind}",
             f"record {kind}")  # fmt: skip
    return dataset["repo_id"], root


def frames(cfg: OwnSceneConfig) -> dict[str, Path]:
    """Test frames of every look (and the fixed look's), and 20 exact labels per kind standing in for hand labels."""
    look = ["--appearance=unseen", f"--look_seed={cfg.look_seed()}"]
    renders = {
        **{
            f"test_{a}": ["--episodes=60", "--frames_per_episode=4", "--seed=200000", f"--appearance={a}"]
            for a in LOOKS
        },
        "test_look": ["--episodes=60", "--frames_per_episode=4", "--seed=200000", *look],
        "hand_look": ["--episodes=10", "--frames_per_episode=1", "--seed=650000", *look],
        "hand_family": ["--episodes=10", "--frames_per_episode=1", "--seed=650000", "--appearance=unseen"],
        # randomised frames like the shipped segmenter's own (its seeds), replayed beside a scene's labels
        "replay": ["--episodes=150", "--frames_per_episode=4", "--seed=0"],
    }
    out = {}
    for name, args in renders.items():  # a finished render returns at once
        out[name] = cfg.output_dir / "frames" / name
        _run(cfg, [str(VENV_BIN / "so101-seg-render"), f"--output_dir={out[name]}", *args, "--height=96", "--width=128",
                   "--cameras=[front,wrist]"], f"frames_{name}", f"frames {name}")  # fmt: skip
    return out


def labels(cfg: OwnSceneConfig, kind: str, n: int, extra: list[str] | None = None, name: str | None = None) -> dict:
    """so101-seg-autolabel of the first n episodes; its report (label IoU against the recording's segmentation)."""
    repo_id, root = recording(cfg, kind)
    name = name or f"{kind}_n{n}"
    out = cfg.output_dir / "labels" / name

    def produce() -> dict:
        episodes = f"--dataset.episodes=[{','.join(map(str, range(n)))}]"
        args = [str(VENV_BIN / "so101-seg-autolabel"), f"--dataset.repo_id={repo_id}", f"--dataset.root={root}",
                episodes, f"--output_dir={out}", *(NO_COLOUR_FITS if extra is None else extra)]  # fmt: skip
        _run(cfg, args, f"labels_{name}", f"labels {name}")
        return json.loads((out / "autolabel_report.json").read_text())

    return _kept(cfg, f"labels_{name}.json", produce)


def seg_eval(cfg: OwnSceneConfig, segmenter: Path, test: Path, name: str, camera: str | None = None) -> dict:
    def produce() -> dict:
        out = cfg.output_dir / "seg_eval" / f"{name}.json"
        args = [str(VENV_BIN / "so101-seg-eval"), f"--segmenter_path={segmenter}", f"--data.path={test}",
                "--data.img_height=96", "--data.img_width=128", f"--output={out}"]  # fmt: skip
        _run(cfg, args + ([f"--camera={camera}"] if camera else []), f"seg_eval_{name}", f"score {name}")
        return json.loads(out.read_text())

    return _kept(cfg, f"seg_{name}.json", produce)


def adapted(cfg: OwnSceneConfig, name: str, data: Path, test: Path, replay: Path | None = None) -> Path:
    """The shipped segmenter fine-tuned on `data` (with `replay`'s frames beside them), scored on `test` when it ends
    (test_metrics.json, written last); its best checkpoint. An interrupted training resumes."""
    run = cfg.output_dir / "segmenters" / name
    if not (run / "test_metrics.json").is_file():
        args = [str(VENV_BIN / "so101-seg-train"), f"--config_path={cfg.adapt_config}", f"--data.path={data}",
                f"--data.test_path={test}", f"--output_dir={run}"]  # fmt: skip
        args += [f"--data.replay_path={replay}"] if replay else []
        _run(cfg, args, f"adapt_{name}", f"adapt {name}")
    _kept(cfg, f"train_{name}.json", lambda: json.loads((run / "test_metrics.json").read_text()))
    return run / "best"


def policy_segmenters(cfg: OwnSceneConfig) -> dict[str, str]:
    """Policy arm -> the adapted segmenter it is given (segmenters/<name>/best): the fixed look's, from
    `policy_demos` demonstrations, labelled before the standing fit, and labelled twice with it."""
    return {"adapted": f"look_n{cfg.policy_demos}_replay", "adapted_r2": f"look_n{cfg.policy_demos}_round2_replay"}


def replayed(cfg: OwnSceneConfig, name: str, tests: dict[str, Path]) -> Path:
    """The segmenter `look_n<N>[_standing|_round2|_round2_tb]_replay`, trained on its labels with the randomised
    frames replayed beside them. Round 2 labels the demonstrations again with round 1's segmenter (`_standing`), whose
    camera fit then agrees with a segmenter that knows the scene; `_tb` fits the cameras to its table and background
    alone (`--fit.camera_fingers=false`)."""
    n = int(name.removeprefix("look_n").split("_")[0])
    if name == f"look_n{n}_replay":  # before the standing fit
        labels(cfg, "look", n)
    elif name == f"look_n{n}_standing_replay":
        labels(cfg, "look", n, [], f"look_n{n}_standing")
    else:  # round 2, the cameras fitted with the fingers (the default) or without them
        first = replayed(cfg, f"look_n{n}_standing_replay", tests)
        fingers = [] if name == f"look_n{n}_round2_replay" else ["--fit.camera_fingers=false"]
        labels(cfg, "look", n, [f"--segmenter_path={first}", *fingers], name.removesuffix("_replay"))
    data = cfg.output_dir / "labels" / name.removesuffix("_replay")
    return adapted(cfg, name, data, tests["test_look"], tests["replay"])


def segmenter_stage(cfg: OwnSceneConfig, tests: dict[str, Path]) -> dict:
    """Zero-shot and adapted segmenters on every look's test frames (both cameras, and the wrist alone)."""
    shipped = ROOT / "so101_segmenter" / "src" / "so101_segmenter" / "twin_segmenter"
    scored = {}
    candidates = {"zero_shot": lambda: shipped}
    for kind in KINDS:
        own = tests["test_look" if kind == "look" else "test_unseen"]  # the frames of the look it adapts to
        for n in cfg.demos:
            data = cfg.output_dir / "labels" / f"{kind}_n{n}"
            candidates[f"{kind}_n{n}"] = lambda k=kind, n=n, d=data, t=own: adapted(cfg, f"{k}_n{n}", d, t)
        candidates[f"{kind}_hand20"] = lambda k=kind, t=own: adapted(cfg, f"{k}_hand20", tests[f"hand_{k}"], t)
    # the recipes the policies get: the fixed look's labels with the randomised frames replayed beside them, before
    # the standing fit, with it, and labelled again with that segmenter
    n = cfg.policy_demos
    names = [*policy_segmenters(cfg).values(), f"look_n{n}_standing_replay", f"look_n{n}_round2_tb_replay"]
    # the other numbers of demonstrations with the colour fits, one round
    names += [f"look_n{m}_standing_replay" for m in cfg.demos if m != n]
    for name in names:
        candidates[name] = lambda name=name: replayed(cfg, name, tests)
    for name, make in candidates.items():
        needed = [f"seg_{name}_{t}{w}.json" for t in ("test_look", "test_unseen", "test_none", "test_shifted")
                  for w in ("", "_wrist")]  # fmt: skip
        # every score archived: the segmenter is not needed (nor trained again on another machine)
        folder = None if cfg.archive_dir and all((cfg.archive_dir / n).is_file() for n in needed) else make()
        scored[name] = {}
        for test in ("test_look", "test_unseen", "test_none", "test_shifted"):
            scored[name][test] = seg_eval(cfg, folder, tests[test], f"{name}_{test}")
            scored[name][f"{test}_wrist"] = seg_eval(cfg, folder, tests[test], f"{name}_{test}_wrist", "wrist")
    return scored


def policy_eval(cfg: OwnSceneConfig, checkpoint: Path, run: str, look: str) -> dict:
    name = f"{run}_{look}_seed{cfg.eval_seed}_{cfg.eval_episodes}"

    def produce() -> dict:
        out = cfg.output_dir / "eval" / name
        appearance = "unseen" if look == "unseen_look" else look
        args = eval_args(checkpoint, env_flags(checkpoint), appearance, cfg.eval_episodes, cfg.eval_batch_size,
                         cfg.eval_seed, out)  # fmt: skip
        if look == "unseen_look":
            args.append(f"--env.look_seed={cfg.look_seed()}")
        _run(cfg, args, f"eval_{name}", f"eval {run} ({look})")
        return eval_summary(json.loads((out / "eval_info.json").read_text()))

    return _kept(cfg, f"{name}.json", produce)


def eval_summary(data: dict) -> dict:
    """Successes, episodes, mean return and the per-episode successes of a lerobot-eval eval_info.json."""
    flags = [s for task in data.get("per_task", []) for s in task.get("metrics", {}).get("successes", [])]
    overall = data["overall"]
    return {"successes": round(overall["pc_success"] * overall["n_episodes"] / 100),
            "episodes": overall["n_episodes"], "mean_return": overall["avg_sum_reward"],
            "per_episode": "".join("1" if s else "0" for s in flags)}  # fmt: skip


def policy_stage(cfg: OwnSceneConfig, tests: dict[str, Path]) -> dict:
    """Each zero-shot checkpoint as it is and with each adapted segmenter of `policy_segmenters` swapped in, look by
    look (every seed in the first look before the next look)."""
    with open(cfg.zero_shot_config) as f:
        steps = int(draccus.load(dict, f)["steps"])
    checkpoints = {}
    for seed in cfg.seeds:
        # the final checkpoint (checkpoints/last points at the latest saved one while training still runs)
        zero = cfg.zero_shot_dir / f"segdepth_rgbonly_s{seed}" / "checkpoints" / f"{steps:06d}" / "pretrained_model"
        checkpoints[seed] = {"zero_shot": zero}
        for arm, segmenter in policy_segmenters(cfg).items():
            swapped = cfg.output_dir / "policies" / f"{arm}_s{seed}"
            names = [f"{arm}_s{seed}_{look}_seed{cfg.eval_seed}_{cfg.eval_episodes}.json" for look in cfg.policy_looks]
            if cfg.archive_dir is None or not all((cfg.archive_dir / n).is_file() for n in names):
                if not (zero / "model.safetensors").is_file():
                    print(f"seed {seed}: no checkpoint at {zero} yet (train it with examples/robust_twin.py, above)")
                    continue
                args = [str(VENV_BIN / "so101-seg-swap"), f"--policy.path={zero}",
                        f"--segmenter_path={replayed(cfg, segmenter, tests)}", f"--output_dir={swapped}"]  # fmt: skip
                _run(cfg, args, f"swap_{arm}_s{seed}", f"swap {arm} seed {seed}")  # returns at once when done
            checkpoints[seed][arm] = swapped
    results = {}
    for look in cfg.policy_looks:
        for seed, arms in checkpoints.items():
            for arm, checkpoint in arms.items():
                # the unchanged checkpoint in `none` and `shifted`: evaluated so already where it was trained
                name = f"segdepth_rgbonly_s{seed}_{look}_seed{cfg.eval_seed}_{cfg.eval_episodes}.json"
                trained = cfg.zero_shot_archive / name
                if arm == "zero_shot" and trained.is_file():  # examples/robust_twin.py archives eval_info.json
                    scored = eval_summary(json.loads(trained.read_text()))
                else:
                    scored = policy_eval(cfg, checkpoint, f"{arm}_s{seed}", look)
                results.setdefault(arm, {}).setdefault(str(seed), {})[look] = scored
    return results


def tables(cfg: OwnSceneConfig, results: dict) -> str:
    lines = ["| labels | N | frames labelled | mIoU with band | cube IoU with band | mIoU without | cube without | "
             "ms a frame |", "|---|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, report in results["labels"].items():
        kind, _, n = name.rpartition("_n") if "_n" in name else (name, "", "")
        iou = report.get("label_iou", {})
        cells = [f"{iou[b]['miou']:.3f} | {iou[b]['per_class_iou']['cube']:.3f}" if b in iou else "- | -"
                 for b in ("with_band", "without_band")]  # fmt: skip
        share = f"{report['frames_labelled']}/{report['frames_considered']} ({report['share_labelled']:.0%})"
        lines.append(f"| {kind} | {n} | {share} | {cells[0]} | {cells[1]} | {report['ms_per_frame']:.1f} |")
    lines += ["", "| segmenter | own look mIoU (cube) | unseen family | none | shifted | own look, wrist |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for name, scored in results["segmenters"].items():
        cell = [f"{scored[t]['miou']:.3f} ({scored[t]['per_class_iou']['cube']:.3f})"
                for t in ("test_look", "test_unseen", "test_none", "test_shifted", "test_look_wrist")]  # fmt: skip
        lines.append(f"| {name} | " + " | ".join(cell) + " |")
    if results.get("policies"):
        adapted_arms = [arm for arm in ARMS[1:] if arm in results["policies"]]
        header = "".join(f" {arm}, seeds | pooled | {arm} minus zero-shot, Newcombe 95% |" for arm in adapted_arms)
        lines += [
            "",
            f"| look | zero-shot, seeds | pooled |{header}",
            "|---|---|---|" + "---|---|---|" * len(adapted_arms),
        ]
        for look in cfg.policy_looks:
            rates, cells = {}, {}
            for arm in ["zero_shot", *adapted_arms]:
                runs = [seeds[look] for seeds in results["policies"][arm].values() if look in seeds]
                cells[arm] = ", ".join(f"{r['successes']}/{r['episodes']}" for r in runs)
                rates[arm] = wilson(sum(r["successes"] for r in runs), sum(r["episodes"] for r in runs))
            row = f"| {look} | {cells['zero_shot']} | {rates['zero_shot']} |"
            for arm in adapted_arms:
                row += f" {cells[arm]} | {rates[arm]} | {newcombe(rates[arm], rates['zero_shot'])} |"
            lines.append(row)
    return "\n".join(lines)


@parser.wrap()
def own_scene(cfg: OwnSceneConfig) -> dict:
    os.chdir(ROOT)
    (cfg.output_dir / "logs").mkdir(parents=True, exist_ok=True)
    results: dict = {"labels": {}}
    for kind in KINDS:
        for n in cfg.demos:
            results["labels"][f"{kind}_n{n}"] = labels(cfg, kind, n)
    if cfg.error_demos:
        for name, flags in {**ERRORS, **VARIANTS}.items():
            report = labels(cfg, "look", cfg.error_demos, NO_COLOUR_FITS + flags, f"look_{name}")
            results["labels"][f"look_{name}_n{cfg.error_demos}"] = report
    tests = frames(cfg)
    results["policies"] = policy_stage(cfg, tests)  # the longest stage's inputs first
    results["segmenters"] = segmenter_stage(cfg, tests)  # labels the rounds it trains on where they are missing
    n = cfg.policy_demos
    others = [f"look_n{m}_standing" for m in cfg.demos if m != n]
    for name in (f"look_n{n}_standing", f"look_n{n}_round2", f"look_n{n}_round2_tb", *others):
        results["labels"][name] = (
            json.loads((cfg.archive_dir / f"labels_{name}.json").read_text())
            if cfg.archive_dir
            else json.loads((cfg.output_dir / "labels" / name / "autolabel_report.json").read_text())
        )
    # today's labeller (the colour fits on; round 1, the cameras fitted to the shipped segmenter) under the same
    # errors, and on the family
    if cfg.error_demos:
        for name, flags in ERRORS.items():
            report = labels(cfg, "look", cfg.error_demos, flags, f"look_{name}_colour")
            results["labels"][f"look_{name}_colour_n{cfg.error_demos}"] = report
    results["labels"][f"family_n{n}_colour"] = labels(cfg, "family", n, [], f"family_n{n}_colour")
    write_json(cfg.output_dir / "results.json", results)
    print(tables(cfg, results))
    return results


def main() -> None:
    prepare_command_line()
    own_scene()


if __name__ == "__main__":
    main()
