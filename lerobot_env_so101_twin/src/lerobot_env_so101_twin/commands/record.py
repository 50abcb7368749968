"""`so101-twin-record`: record the twin with its expert in simulated time, in several worker processes.

`lerobot-record --robot.type=so101_twin --teleop.type=so101_twin_expert` paces every step by the wall clock, so the
twin, which renders the demo's cameras several times faster than 30 fps, waits most of the time, and a loaded
machine records fewer simulated steps per episode. This command runs the same robot and teleoperator plugins
through the same LeRobot calls (`make_default_processors`, `aggregate_pipeline_dataset_features`,
`build_dataset_frame`, `LeRobotDataset.create/add_frame/save_episode`), so the dataset has the features, names,
units and encodings `lerobot-record` writes, but it steps as fast as the machine allows and counts frames, not
seconds: an episode is exactly `episode_time_s * fps` frames, and episode k starts from the scene and DART noise
drawn from `robot.seed + k` (as `lerobot-record` numbers them), whatever the load and the number of workers.

Episodes are split into shards of `episodes_per_shard`; each worker records a shard into a dataset of its own under
`.<root>.partial/`, which is renamed into place only once the shard is finalised, so a crash or an interrupt never
lets a partial episode through. Running the same command again resumes: finished shards are kept, the others are
recorded again. When every shard is there, LeRobot's `aggregate_datasets` merges them (after the existing episodes
with `--resume=true`) into `.<root>.tmp`, which then replaces `root`.

    so101-twin-record --robot.cameras='[wrist]' --robot.observation_height=120 --robot.observation_width=160 \\
        --robot.depth=true --robot.segmentation=true --robot.action_noise_std=1.0 \\
        --dataset.repo_id=local/liftcube --dataset.root=data/liftcube --dataset.num_episodes=100 \\
        --dataset.episode_time_s=5 --num_workers=2
"""

import json
import logging
import os
import queue
import shutil
import sys
import time
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path

from lerobot.configs import parser
from lerobot.configs.dataset import DatasetRecordConfig
from lerobot.utils.utils import init_logging

from so101_core import TASK_DESCRIPTIONS
from so101_run_infra.atomic import replace_folder, staging_folder, write_json, write_jsonl
from so101_run_infra.cli import OutputRefused, prepare_command_line
from so101_run_infra.hub import check_push
from so101_run_infra.runs import config_differences

from ..config_robot import SO101TwinConfig
from ..config_teleoperator import SO101TwinExpertConfig
from ..simulation import LIFT_HEIGHT
from .driver import DriverConfig, PolicyDriver
from .record_hub import push_dataset

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
UNRECORDED = ("num_workers", "worker_threads", "restart", "log_dir", "fail_fast_episodes")  # a resume may change them
ARMS_FILE = "meta/so101_twin_arms.jsonl"  # one line per episode: the arm it was recorded with (arm.py)
RECORDED = "meta/so101_twin_record.json"  # the manifest of the run that made (or last appended to) a dataset


@dataclass
class TwinDatasetConfig(DatasetRecordConfig):
    """lerobot-record's `--dataset.*` options, with defaults for a simulator: nothing pushed unless asked
    (--dataset.push_to_hub=true pushes the merged dataset as lerobot-record does), no reset time, the repo id kept as
    given, and frames streamed to the encoders rather than written as PNG first (same codecs)."""

    push_to_hub: bool = False
    reset_time_s: int | float = 0
    no_stamp: bool = True
    streaming_encoding: bool = True
    # one encoder thread per stream: the workers already keep every core busy (measured 20% faster than auto)
    encoder_threads: int | None = 1


@dataclass
class TwinRecordConfig:
    robot: SO101TwinConfig = field(default_factory=SO101TwinConfig)
    teleop: SO101TwinExpertConfig = field(default_factory=SO101TwinExpertConfig)
    dataset: TwinDatasetConfig = field(default_factory=TwinDatasetConfig)
    # A policy at the controls, the expert's commands recorded as its labels (DAgger; commands/driver.py)
    driver: DriverConfig = field(default_factory=DriverConfig)
    # Worker processes, each recording whole shards; 1 records in this process.
    num_workers: int = 2
    # Episodes per shard: the unit of work a crash or an interrupt can lose.
    episodes_per_shard: int = 4
    # Add episodes to an existing dataset at dataset.root (numbered, and seeded, after its last one), as
    # lerobot-record's --resume does.
    resume: bool = False
    # Stop when the first this-many episodes of a shard all fail: the expert cannot solve this task as configured
    # (0 turns the check off).
    fail_fast_episodes: int = 4
    # Threads per worker for Mesa's software renderer (LP_NUM_THREADS) and torch; None: leave them be.
    worker_threads: int | None = 1
    # Drop the partial work of an interrupted run with other settings instead of refusing to start.
    restart: bool = False
    # the workers' output (encoder chatter, per-episode logs); None: a folder kept with the partial work until done
    log_dir: Path | None = None

    def __post_init__(self):
        ds = self.dataset
        if not ds.repo_id:
            raise ValueError("--dataset.repo_id is required (e.g. local/so101_twin_liftcube)")
        if ds.num_episodes < 1:
            raise ValueError(f"--dataset.num_episodes must be >= 1, got {ds.num_episodes}")
        if ds.episode_time_s <= 0:
            raise ValueError(f"--dataset.episode_time_s must be positive, got {ds.episode_time_s}")
        if ds.fps != self.robot.fps:
            raise ValueError(
                f"--dataset.fps={ds.fps} and --robot.fps={self.robot.fps} differ: the twin advances 1/robot.fps s "
                "per frame, so the dataset's timestamps would be wrong; set both to the same value"
            )
        if ds.push_to_hub:  # as lerobot-record: checked before any episode, pushed once all are merged
            check_push(ds.push_to_hub, ds.repo_id, "dataset")
        if self.num_workers < 1 or self.episodes_per_shard < 1 or self.fail_fast_episodes < 0:
            raise ValueError("--num_workers and --episodes_per_shard must be >= 1, --fail_fast_episodes >= 0")
        if self.robot.task == "LiftCube" and self.teleop.lift_height <= LIFT_HEIGHT:
            raise ValueError(f"--teleop.lift_height={self.teleop.lift_height} m cannot solve LiftCube, whose "
                             f"success needs the cube {LIFT_HEIGHT} m above the table: use a lift height above "
                             f"{LIFT_HEIGHT} (default 0.10)")  # fmt: skip
        if not ds.single_task:
            ds.single_task = TASK_DESCRIPTIONS[self.robot.task]
        if self.driver.policy_path and self.teleop.expert != "reactive":
            raise ValueError("--driver.policy_path needs --teleop.expert=reactive: the scripted expert replays a plan "
                             "by time and has no label for the states a policy leads the arm to")  # fmt: skip

    @property
    def frames_per_episode(self) -> int:
        return max(1, round(self.dataset.episode_time_s * self.dataset.fps))

    @property
    def root(self) -> Path:
        from lerobot.utils.constants import HF_LEROBOT_HOME

        return Path(self.dataset.root) if self.dataset.root else HF_LEROBOT_HOME / self.dataset.repo_id


class ExpertCannotSolveError(RuntimeError): ...


@dataclass(frozen=True)
class Shard:
    episodes: tuple[int, ...]  # global episode indices; the scene of episode k comes from robot.seed + k

    @property
    def name(self) -> str:
        return f"shard_{self.episodes[0]:06d}_{self.episodes[-1]:06d}"


def shards_for(first_episode: int, num_episodes: int, episodes_per_shard: int) -> list[Shard]:
    indices = list(range(first_episode, first_episode + num_episodes))
    return [Shard(tuple(indices[i : i + episodes_per_shard])) for i in range(0, num_episodes, episodes_per_shard)]


def _dataset_features(robot, use_videos: bool) -> tuple[dict, tuple]:
    """The features lerobot-record derives for `robot` with its default (identity) processors."""
    from lerobot.datasets import aggregate_pipeline_dataset_features, create_initial_features
    from lerobot.processor import make_default_processors
    from lerobot.utils.feature_utils import combine_feature_dicts

    teleop_proc, robot_proc, obs_proc = make_default_processors()
    features = combine_feature_dicts(
        aggregate_pipeline_dataset_features(
            pipeline=teleop_proc,
            initial_features=create_initial_features(action=robot.action_features),
            use_videos=use_videos,
        ),
        aggregate_pipeline_dataset_features(
            pipeline=obs_proc,
            initial_features=create_initial_features(observation=robot.observation_features),
            use_videos=use_videos,
        ),
    )
    return features, (teleop_proc, robot_proc, obs_proc)


# ----- worker side ---------------------------------------------------------------------------------------------
_progress = None


def _init_worker(progress_queue, threads: int | None, log_dir: Path | None = None) -> None:
    global _progress
    _progress = progress_queue
    if log_dir is not None:
        # the encoders write to the C-level stderr: send it, and this process's logging, to a file
        log = open(Path(log_dir) / f"worker_{os.getpid()}.log", "a", buffering=1)  # noqa: SIM115 (lives as long as the process)
        os.dup2(log.fileno(), 2)
        logging.basicConfig(
            level=logging.INFO, stream=log, force=True, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    import datasets

    datasets.disable_progress_bars()
    if threads:
        # before any GL context or torch op exists in this fresh (spawned) process
        os.environ["LP_NUM_THREADS"] = str(threads)
        import torch

        torch.set_num_threads(threads)


def _report(*message) -> None:
    if _progress is not None:
        _progress.put(message)


def _check_no_dropped_frames(dataset, shard: Shard, episode: int) -> None:
    encoder = getattr(getattr(dataset, "writer", None), "_streaming_encoder", None)
    dropped = {k: n for k, n in (getattr(encoder, "_dropped_frames", None) or {}).items() if n}
    if dropped:
        raise RuntimeError(
            f"the video encoders dropped frames in episode {episode} of {shard.name} ({dropped}): the episode was "
            "not saved; raise --dataset.encoder_queue_maxsize or use fewer --num_workers"
        )


def record_shard(cfg: TwinRecordConfig, shard: Shard, stage: Path) -> dict:
    """Record `shard`'s episodes into `stage/<shard.name>` (written under a temporary name, renamed when done)."""
    from lerobot.datasets import LeRobotDataset
    from lerobot.utils.constants import ACTION, OBS_STR
    from lerobot.utils.feature_utils import build_dataset_frame

    from ..robot import SO101Twin
    from ..teleoperator import SO101TwinExpert

    final = stage / shard.name
    tmp = staging_folder(final, create=False)  # LeRobotDataset.create makes the folder itself
    # Scenes are reset here, per episode index, rather than from lerobot-record's "Recording episode N" log line.
    robot = SO101Twin(replace(cfg.robot, reset_on_new_episode=False))
    teleop = SO101TwinExpert(cfg.teleop)
    ds_cfg = cfg.dataset
    features, (teleop_proc, robot_proc, obs_proc) = _dataset_features(robot, ds_cfg.video)
    dataset = LeRobotDataset.create(
        f"{ds_cfg.repo_id}_{shard.name}",
        ds_cfg.fps,
        root=tmp,
        robot_type=robot.name,
        features=features,
        use_videos=ds_cfg.video,
        image_writer_processes=ds_cfg.num_image_writer_processes,
        image_writer_threads=ds_cfg.num_image_writer_threads_per_camera * len(robot.cameras),
        batch_encoding_size=ds_cfg.video_encoding_batch_size,
        rgb_encoder=ds_cfg.rgb_encoder,
        depth_encoder=ds_cfg.depth_encoder,
        encoder_threads=ds_cfg.encoder_threads,
        streaming_encoding=ds_cfg.streaming_encoding,
        # LeRobot's streaming encoder drops a frame (with a warning) when its queue stays full for 0.1 s, which a
        # recorder stepping faster than the encoders would hit: a queue that holds a whole episode never fills.
        encoder_queue_maxsize=max(ds_cfg.encoder_queue_maxsize, cfg.frames_per_episode + 1),
    )
    driver = None
    if cfg.driver.policy_path:
        driver = PolicyDriver(cfg.driver, dataset.features, ds_cfg.single_task, robot.name)
    successes: list[bool] = []
    arms: list[dict] = []  # each episode's arm, to replay and explain it (written only for a non-ideal arm)
    teleop.connect()
    robot.connect()
    try:
        for episode in shard.episodes:
            robot.reset_scene(cfg.robot.seed + episode)
            if driver is not None:
                driver.reset()
            arms.append({"episode_index": episode, **robot.twin.arm_record()})
            success = False
            for _ in range(cfg.frames_per_episode):
                # the calls and their order are lerobot-record's record_loop's
                obs = robot.get_observation()
                obs_processed = obs_proc(obs)
                observation_frame = build_dataset_frame(dataset.features, obs_processed, prefix=OBS_STR)
                action = teleop_proc((teleop.get_action(), obs))
                sent = action if driver is None else driver.action(observation_frame, robot.twin.periods_per_action)
                robot.send_action(robot_proc((sent, obs)))
                action_frame = build_dataset_frame(dataset.features, action, prefix=ACTION)
                dataset.add_frame({**observation_frame, **action_frame, "task": ds_cfg.single_task})
                success = success or robot.twin.is_success()
            _check_no_dropped_frames(dataset, shard, episode)
            dataset.save_episode()
            successes.append(success)
            _report("episode", episode, success, cfg.frames_per_episode)
            n = cfg.fail_fast_episodes if driver is None else 0  # a failing policy is what DAgger records
            if n and len(successes) == n and not any(successes):
                raise ExpertCannotSolveError(
                    f"the {cfg.teleop.expert} expert failed all of the first {n} episodes of {shard.name} "
                    f"(task {cfg.robot.task}, episodes {list(shard.episodes[:n])}): it cannot solve this task as "
                    "configured; check --robot.* / --teleop.* (or --fail_fast_episodes=0 to record anyway)"
                )
        dataset.finalize()
        if not robot.twin.ideal_arm or cfg.robot.arm != "none":
            write_jsonl(tmp / ARMS_FILE, arms)
    finally:
        if robot.is_connected:
            robot.disconnect()
        teleop.disconnect()
    replace_folder(tmp, final)
    return {"shard": shard.name, "successes": successes}


@contextmanager
def _stderr_to(path: Path):
    """Send this process's C-level and Python stderr to `path` for the duration."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(path, "a") as log:
            os.dup2(log.fileno(), 2)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


# ----- driver side -----------------------------------------------------------------------------------------------
def _manifest(cfg: TwinRecordConfig, first_episode: int) -> dict:
    settings = asdict(cfg)
    for key in UNRECORDED:
        settings.pop(key)
    settings["append"] = settings.pop("resume")  # the key a partial recording made before the rename has
    settings["first_episode"] = first_episode
    if settings["teleop"].get("clearance_mm", 0) is None:  # a descent onto the centre, as manifests before the option
        settings["teleop"].pop("clearance_mm")
    return json.loads(json.dumps(settings, default=str))


def _check_appendable(cfg: TwinRecordConfig, root: Path) -> int:
    """Episodes already in the dataset at `root`, after checking that new ones would have the same features."""
    from lerobot.datasets import LeRobotDatasetMetadata
    from lerobot.utils.constants import DEFAULT_FEATURES

    from ..robot import SO101Twin

    if not (root / "meta" / "info.json").exists():
        raise FileNotFoundError(f"--resume=true needs an existing dataset at {root}; found no meta/info.json there")
    meta = LeRobotDatasetMetadata(cfg.dataset.repo_id, root=root)
    features, _ = _dataset_features(SO101Twin(cfg.robot), cfg.dataset.video)
    expected = {**features, **DEFAULT_FEATURES}

    def strip(feats: dict) -> dict:
        return {k: {f: v for f, v in ft.items() if f != "info"} for k, ft in feats.items()}

    problems = []
    if meta.fps != cfg.dataset.fps:
        problems.append(f"fps {meta.fps} vs {cfg.dataset.fps}")
    if meta.robot_type != "so101_twin":
        problems.append(f"robot_type {meta.robot_type!r} vs 'so101_twin'")
    have, want = strip(meta.features), strip(json.loads(json.dumps(expected, default=list)))
    for key in sorted(set(have) | set(want)):
        if key not in have or key not in want:
            problems.append(f"feature '{key}' only in the {'new recording' if key in want else 'dataset'}")
        elif json.dumps(have[key], default=list) != json.dumps(want[key], default=list):
            problems.append(f"feature '{key}': dataset {have[key]} vs new {want[key]}")
    problems += _encoder_changes(cfg, root)
    if problems:
        raise ValueError(f"cannot append to {root}: " + "; ".join(problems))
    return meta.total_episodes


def _encoder_changes(cfg: TwinRecordConfig, root: Path) -> list[str]:
    """The video encoder settings that differ from those the dataset was recorded with (its so101-twin-record manifest):
    LeRobot's merge joins the streams packet by packet, and x265 streams of another preset lose frames at the join."""
    before = json.loads((root / RECORDED).read_text()).get("dataset", {}) if (root / RECORDED).is_file() else {}
    now = json.loads(json.dumps(asdict(cfg.dataset), default=str))
    keys = [k for k in ("rgb_encoder", "depth_encoder") if k in before and before[k] != now[k]]
    return [f"--dataset.{k}.{f} {before[k].get(f)!r} vs new {now[k].get(f)!r}" for k in keys
            for f in sorted(set(before[k]) | set(now[k])) if before[k].get(f) != now[k].get(f)]  # fmt: skip


class _EpisodeBar:
    """The workers' progress queue for a run without workers: the bar moves as each episode is saved."""

    def __init__(self, progress) -> None:
        self.progress, self.succeeded = progress, []

    def put(self, message: tuple) -> None:
        kind, _episode, ok, frames = message
        if kind == "episode":
            self.succeeded.append(ok)
            self.progress.update(frames)
            self.progress.set_postfix(solved=f"{sum(self.succeeded)}/{len(self.succeeded)}")


def _run_shards(cfg: TwinRecordConfig, todo: list[Shard], stage: Path, progress, log_dir: Path) -> list[dict]:
    global _progress
    if cfg.num_workers == 1:
        _progress = _EpisodeBar(progress)
        try:
            return [record_shard(cfg, shard, stage) for shard in todo]
        finally:
            _progress = None
    ctx = get_context("spawn")  # MuJoCo's GL contexts and torch do not survive fork
    messages = ctx.Queue()
    results, succeeded = [], []
    with ProcessPoolExecutor(
        max_workers=min(cfg.num_workers, len(todo)),
        mp_context=ctx,
        initializer=_init_worker,
        initargs=(messages, cfg.worker_threads, log_dir),
    ) as pool:
        pending = {pool.submit(record_shard, cfg, shard, stage): shard for shard in todo}
        while pending:
            done, _ = wait(pending, timeout=0.5, return_when=FIRST_EXCEPTION)
            while True:
                try:
                    kind, _episode, ok, frames = messages.get_nowait()
                except queue.Empty:
                    break
                if kind == "episode":
                    succeeded.append(ok)
                    progress.update(frames)
                    progress.set_postfix(solved=f"{sum(succeeded)}/{len(succeeded)}")
            for future in done:
                shard = pending.pop(future)
                try:
                    results.append(future.result())
                except BrokenProcessPool as err:
                    for other in pending:
                        other.cancel()
                    raise RuntimeError(
                        f"a worker process died while recording {shard.name} (crash or out of memory); its "
                        f"episodes were discarded, finished shards are kept in {stage}: run the same command "
                        "again to resume"
                    ) from err
                except BaseException:
                    for other in pending:
                        other.cancel()
                    raise
    return results


@dataclass(frozen=True)
class _Run:
    """Where this run records: its first global episode index, the staging folder and its shards, the workers' logs."""

    first_episode: int
    stage: Path
    shards: list[Shard]
    log_dir: Path


def _already_recorded(cfg: TwinRecordConfig) -> dict | None:
    """The dataset's summary when this very command already made it (or made this very append); None when there is
    work to do. Refuses a dataset at the root that another command or other settings made, before any work."""
    root = cfg.root
    if not root.exists():
        return None
    saved = root / RECORDED
    info_file = root / "meta" / "info.json"
    if not saved.is_file() or not info_file.is_file():
        if cfg.resume:
            return None  # appending to a recording lerobot-record (or an older so101-twin-record) made
        raise OutputRefused(
            f"{root} exists and so101-twin-record did not finish it (no {RECORDED}): pass --resume=true to add "
            "episodes to it, or choose another --dataset.root"
        )
    info = json.loads(info_file.read_text())
    first = info["total_episodes"] - cfg.dataset.num_episodes if cfg.resume else 0
    previous = json.loads(saved.read_text())
    if previous == _manifest(cfg, first):
        print(f"{root}: already recorded with these settings ({info['total_episodes']} episodes); nothing to do")
        return {"root": str(root), "episodes": info["total_episodes"], "frames": info["total_frames"],
                "episodes_this_run": 0, "already_recorded": True}  # fmt: skip
    if cfg.resume:
        return None
    detail = "; ".join(config_differences(previous, _manifest(cfg, 0)))
    raise OutputRefused(
        f"{root} holds a recording made with other settings ({detail}): choose another --dataset.root, pass "
        "--resume=true to add these episodes to it, or remove that folder to record it again"
    )


def _prepare(cfg: TwinRecordConfig) -> _Run:
    """Refuse a root new episodes would not fit (with --resume), then claim the staging folder:
    an interrupted recording there is resumed if its manifest matches, refused if not (or discarded with --restart)."""
    root = cfg.root
    # without --resume the root does not exist: _already_recorded answered or refused every root that does
    first_episode = _check_appendable(cfg, root) if cfg.resume else 0
    stage = root.with_name(f".{root.name}.partial")
    manifest = _manifest(cfg, first_episode)
    if (stage / MANIFEST).exists():
        previous = {k: v for k, v in json.loads((stage / MANIFEST).read_text()).items() if k not in UNRECORDED}
        if previous != manifest and not cfg.restart:
            changed = sorted(k for k in manifest if previous.get(k) != manifest[k])
            detail = "; ".join(config_differences(previous, manifest))
            raise ValueError(
                f"{stage} holds an interrupted recording made with other settings (differs in {changed}): {detail}; "
                "run the same command as before to resume it, or pass --restart=true to discard it"
            )
        if previous != manifest:
            shutil.rmtree(stage)
    stage.mkdir(parents=True, exist_ok=True)
    write_json(stage / MANIFEST, manifest)
    shards = shards_for(first_episode, cfg.dataset.num_episodes, cfg.episodes_per_shard)
    log_dir = Path(cfg.log_dir) if cfg.log_dir else stage / "logs"  # removed with the stage once merged
    log_dir.mkdir(parents=True, exist_ok=True)
    return _Run(first_episode, stage, shards, log_dir)


def _record_missing_shards(cfg: TwinRecordConfig, run: _Run) -> list[dict]:
    """Record the shards not yet finished in the staging folder, under one progress bar; their results."""
    from tqdm import tqdm

    todo = [s for s in run.shards if not (run.stage / s.name / "meta" / "info.json").exists()]
    done = len(run.shards) - len(todo)
    frames = cfg.frames_per_episode
    with tqdm(
        total=cfg.dataset.num_episodes * frames,
        initial=done * cfg.episodes_per_shard * frames,
        desc=f"recording {cfg.dataset.num_episodes} episodes",
        unit="frame",
    ) as progress:
        if done:
            logger.info("resuming: %d of %d shards already recorded in %s", done, len(run.shards), run.stage)
        return _run_shards(cfg, todo, run.stage, progress, run.log_dir) if todo else []


def _merge(cfg: TwinRecordConfig, run: _Run) -> dict:
    """Merge the shards (after the existing episodes with --resume) into `cfg.root`, replacing it, and drop the
    staging folder; the merged dataset's meta/info.json."""
    from lerobot.datasets.aggregate import aggregate_datasets

    root = cfg.root
    roots = ([root] if cfg.resume else []) + [run.stage / s.name for s in run.shards]
    out_tmp = staging_folder(root, create=False)  # aggregate_datasets makes the folder itself
    merge_log = run.log_dir / "merge.log"
    logger.info("merging %d shards into %s (LeRobot's aggregate_datasets; its output: %s)", len(roots), root, merge_log)
    with _stderr_to(merge_log):  # LeRobot's progress bars and FFmpeg's muxer chatter, per file
        aggregate_datasets(
            repo_ids=[cfg.dataset.repo_id] * int(cfg.resume) + [f"{cfg.dataset.repo_id}_{s.name}" for s in run.shards],
            aggr_repo_id=cfg.dataset.repo_id,
            roots=roots,
            aggr_root=out_tmp,
        )
    info = json.loads((out_tmp / "meta" / "info.json").read_text())
    expected = run.first_episode + cfg.dataset.num_episodes
    if info["total_episodes"] != expected:
        raise RuntimeError(f"merged dataset in {out_tmp} has {info['total_episodes']} episodes, expected {expected}")
    arms = [json.loads(line) for r in roots if (r / ARMS_FILE).is_file() for line in (r / ARMS_FILE).open()]
    if arms:
        write_jsonl(out_tmp / ARMS_FILE, arms)
    write_json(out_tmp / RECORDED, _manifest(cfg, run.first_episode))
    replace_folder(out_tmp, root)  # with --resume=true, the old dataset is moved aside, then deleted
    shutil.rmtree(run.stage)
    return info


def _summary(
    cfg: TwinRecordConfig, info: dict, results: list[dict], record_seconds: float, total_seconds: float
) -> dict:
    """The run in numbers; the speeds only when this run recorded shards (not when it only merged finished ones)."""
    successes = [ok for r in sorted(results, key=lambda r: r["shard"]) for ok in r["successes"]]
    recorded = cfg.dataset.num_episodes * cfg.frames_per_episode
    return {
        "root": str(cfg.root),
        "episodes": info["total_episodes"],
        "frames": info["total_frames"],
        "episodes_this_run": len(successes),
        # who solved them: the expert, or the policy at the controls (--driver.policy_path)
        "expert_success" if cfg.driver.policy_path is None else "policy_success": f"{sum(successes)}/{len(successes)}",
        "record_seconds": round(record_seconds, 1),
        "total_seconds": round(total_seconds, 1),
        "simulated_frames_per_second": round(recorded / record_seconds, 1) if results else None,
        "real_time_factor": round(recorded / record_seconds / cfg.dataset.fps, 2) if results else None,
    }


def record(cfg: TwinRecordConfig) -> dict:
    """Record `cfg.dataset.num_episodes` episodes into `cfg.root` (appending with `cfg.resume`); return a summary."""
    done = _already_recorded(cfg)
    if done is not None:
        return done
    cfg.driver.check()
    run = _prepare(cfg)
    start = time.perf_counter()
    results = _record_missing_shards(cfg, run)
    record_seconds = time.perf_counter() - start
    info = _merge(cfg, run)
    summary = _summary(cfg, info, results, record_seconds, time.perf_counter() - start)
    logger.info("recorded %s", json.dumps(summary))
    return summary


@parser.wrap()
def record_cli(cfg: TwinRecordConfig) -> dict:
    summary = record(cfg)
    print(json.dumps(summary, indent=2))
    if cfg.dataset.push_to_hub and summary.get("already_recorded"):
        logger.info("not pushed: this run recorded nothing (the dataset was already there)")
    elif cfg.dataset.push_to_hub:
        summary["pushed_to"] = push_dataset(cfg, summary)
    return summary


def main() -> None:
    prepare_command_line()
    init_logging()
    record_cli()


if __name__ == "__main__":
    main()
