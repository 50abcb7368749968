r"""so101-submit: a stage on SLURM (or on this machine) through submitit, requeued and resumed.

    so101-submit --config_path=configs/cluster_lrz_x100.yaml --stage=laq \
        --args='[--config_path=configs/hlrp_laq_oxe.yaml]'
    so101-submit --config_path=configs/cluster_mcml_x100.yaml --stage=trunk --args='[--config_path=...]' --wait=true
    so101-submit --config_path=configs/cluster_local.yaml --stage=lerobot --args='[--policy.type=hlrp, ...]'
    so101-submit --config_path=configs/cluster_local.yaml --stage=laq -- --config_path=configs/hlrp_laq_twin.yaml

The stage command's own flags go in `--args='[...]'` or after `--` (everything after it, unparsed: values with
commas or brackets need no quoting there); both together: `--args` first.

Stages: `laq` (lerobot_policy_hlrp.commands.train_laq), `trunk` (lerobot_policy_hlrp.commands.train_trunk), `lerobot`
(lerobot.scripts.lerobot_train), and `record`: so101-twin-record as an array of tasks, each recording a contiguous
group of its shards into its staging folder, the last to finish merging them into the root
(lerobot_env_so101_twin.commands.record_array, which also checks and stages the recording before anything is
submitted; `--array_tasks`, default one task per shard):

    so101-submit --config_path=configs/cluster_local.yaml --stage=record --array_tasks=4 \
        -- --config_path=configs/twin_liftcube_rgb.yaml

Needs so101_commands' `cluster` extra (submitit, PyYAML); `record` needs the twin where it runs.
The job is a `StageJob` (stage_job.py): it runs the stage on every node, and on SLURM's warning of the job's end
(timeout or preemption) stops it and requeues the same job with the stage's resume flag (a recording's task, a
`RecordTaskJob`, is requeued as it was: the recorder keeps its finished shards by itself).

Dual queue (`cluster.second_partition`): the same job goes to two partitions; `keep_first_started` cancels the one
that starts later. The two twins also claim the output directory at start, so if so101-submit is stopped before a
winner is known, the later twin exits at once instead of training into the same directory.

Parsed with `lerobot.configs.parser.wrap` like every suite command, imported in `main` only: importing this module
loads no LeRobot. A suite-wide command: it launches HLRP's stages and lerobot-train alike.
"""

import json
import logging
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from so101_run_infra.cli import SettingsRefused, prepare_command_line
from so101_run_infra.extras import missing_extra

from .extras import CLUSTER
from .stage_job import RecordTaskJob, StageJob, flag_value, without_flag

try:
    import submitit
    import yaml
except ModuleNotFoundError as err:  # installed without the `cluster` extra
    raise missing_extra(CLUSTER, err) from None

logger = logging.getLogger("so101-submit")


@dataclass(frozen=True)
class Stage:
    module: str
    needs_config: bool  # its config file carries the run; lerobot-train can be driven by flags alone


STAGES: dict[str, Stage] = {
    "laq": Stage("lerobot_policy_hlrp.commands.train_laq", needs_config=True),
    "trunk": Stage("lerobot_policy_hlrp.commands.train_trunk", needs_config=True),
    "lerobot": Stage("lerobot.scripts.lerobot_train", needs_config=False),
    "record": Stage("lerobot_env_so101_twin.commands.record_array", needs_config=False),
}
RECORD_FLAGS = ("array_tasks", "array_task", "array_claim")  # record_array's own, which so101-submit sets
PLAN_PREFIX = "so101-record-plan: "  # record_array's plan line
WHO_SAYS = re.compile(r"^(\S+\.py|[\w.]*(Error|Refused|Exception)|error): ")
EXECUTORS = ("slurm", "local")
PLACEHOLDER = re.compile(r"<your_[a-z_]+>")


@dataclass
class ClusterConfig:
    name: str = "local"
    executor: str = "local"  # "slurm" | "local" (this machine, for trying things out)
    partition: str | None = None  # None: the cluster's default partition
    # Dual queue: also submit to this partition and keep whichever job starts first; None: off.
    second_partition: str | None = None
    # QoS of the second partition's job (not inherited: on the LRZ AI Systems mcml-* partitions need "mcml" and
    # lrz-* partitions none)
    second_qos: str | None = None
    account: str | None = None
    qos: str | None = None
    nodes: int = 1
    gpus_per_node: int = 0  # requested as --gres=gpu:N; every node runs one task that launches N processes
    cpus_per_task: int | None = None
    mem_gb: int | None = None
    timeout_min: int = 60
    constraint: str | None = None
    setup: list[str] = field(default_factory=list)  # shell lines run before the job (module load, exports, ...)
    folder: Path = Path("outputs/submitit/%j")  # submitit's logs and pickles; %j is the job id
    max_requeues: int = 3  # preemptions and timeouts after which the job is not requeued again
    # Seconds between submitit's USR2 and SLURM's kill: the stage gets half of it to stop, the rest is for requeuing
    signal_delay_s: int = 120
    poll_s: float = 60.0  # dual queue: seconds between two looks at both jobs' states
    # Any other sbatch option, e.g. {mail-type: END, exclusive: true}; "requeue: true" is always added
    additional_parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class SubmitConfig:
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    stage: str = ""  # "laq" | "trunk" | "lerobot" | "record"
    # The stage command's own flags, e.g. '[--config_path=x.yaml]'; or give them after `--` on the command line
    args: list[str] = field(default_factory=list)
    # The stage's output_dir: taken from --output_dir in args, else from the stage's config file; set here, it
    # is passed on as --output_dir (it must agree with args). Needed to resume after a requeue.
    output_dir: Path | None = None
    wait: bool = False  # block until the job ends and fail if it fails
    # --stage=record: the array's tasks, each recording an equal, contiguous group of the recording's shards
    # (--dataset.num_episodes / --episodes_per_shard); None: one task per shard
    array_tasks: int | None = None


# ------------------------------------------------------------------------------------------------ submission


def _config_output_dir(config_path: Path) -> str | None:
    try:
        data = yaml.safe_load(config_path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    value = data.get("output_dir") if isinstance(data, dict) else None
    return str(value) if value else None


def check_cluster(cfg: SubmitConfig) -> None:
    """Check the stage's name and the cluster settings before anything is submitted."""
    cluster = cfg.cluster
    if cfg.stage not in STAGES:
        raise ValueError(f"unknown stage {cfg.stage!r}: use --stage= one of {', '.join(STAGES)}")
    if cfg.array_tasks is not None and cfg.stage != "record":
        raise SettingsRefused(f"--array_tasks={cfg.array_tasks} is for --stage=record only")
    if cluster.executor not in EXECUTORS:
        raise ValueError(f"unknown cluster.executor {cluster.executor!r}: one of {', '.join(EXECUTORS)}")
    for key in ("partition", "second_partition", "account", "qos", "second_qos", "constraint"):
        value = getattr(cluster, key)
        if value is not None and PLACEHOLDER.search(str(value)):
            raise ValueError(f"cluster.{key} is still the placeholder {value!r}: set it in the cluster config")
    for line in cluster.setup:
        if PLACEHOLDER.search(line):
            raise ValueError(f"cluster.setup line {line!r} still holds a placeholder: edit it in the cluster config")
    if cluster.executor == "slurm" and cluster.gpus_per_node < 1 and cfg.stage != "record":
        raise ValueError(f"cluster.gpus_per_node={cluster.gpus_per_node}: a SLURM job of an HLRP stage needs >= 1")
    if cluster.executor == "local" and cluster.nodes != 1:
        raise ValueError(f"cluster.nodes={cluster.nodes}: the local executor runs on this machine only (nodes=1)")
    if cluster.second_partition is not None:
        if cluster.executor != "slurm":
            raise ValueError("dual queue (cluster.second_partition) needs cluster.executor=slurm")
        if cluster.partition is None:
            raise ValueError("dual queue (cluster.second_partition) needs cluster.partition as well")
        if cluster.second_partition == cluster.partition:
            raise ValueError(
                f"dual queue with the same partition twice ({cluster.partition!r}): set cluster.second_partition "
                "to another partition, or to null to switch the dual queue off"
            )
    if not 0 < cluster.signal_delay_s < cluster.timeout_min * 60:
        raise ValueError(
            f"cluster.signal_delay_s={cluster.signal_delay_s} must be above 0 and below timeout_min * 60 "
            f"({cluster.timeout_min * 60}): the job is signalled that long before its end"
        )
    if cluster.max_requeues < 0:
        raise ValueError(f"cluster.max_requeues={cluster.max_requeues} must be >= 0")


def prepare(cfg: SubmitConfig, workdir: Path | None = None) -> tuple[list[str], Path, bool]:
    """Check the submission of a training stage before anything is submitted.

    Returns the stage args (without --resume), its absolute output_dir, and whether the args asked to resume.
    """
    workdir = workdir or Path.cwd()
    check_cluster(cfg)
    args = without_flag(cfg.args, "resume")  # the job adds it when there is something to resume (see StageJob)
    config_path = flag_value(args, "config_path")
    if config_path is None and STAGES[cfg.stage].needs_config:
        raise ValueError(
            f"stage {cfg.stage} needs its config file: add --config_path=<file> to --args "
            f"(e.g. --args='[--config_path=configs/hlrp_{cfg.stage}.yaml]'); got args={args}"
        )
    if config_path is not None and not (workdir / config_path).is_file():
        raise FileNotFoundError(f"stage config --config_path={config_path} not found (looked in {workdir})")

    in_args = flag_value(args, "output_dir")
    if in_args is not None and cfg.output_dir is not None and (workdir / in_args) != (workdir / cfg.output_dir):
        raise ValueError(f"output_dir={cfg.output_dir} disagrees with --output_dir={in_args} in args")
    if in_args is None and cfg.output_dir is not None:
        args.append(f"--output_dir={cfg.output_dir}")
    output_dir = in_args or (str(cfg.output_dir) if cfg.output_dir else None)
    if output_dir is None and config_path is not None:
        output_dir = _config_output_dir(workdir / config_path)
    if output_dir is None:
        raise ValueError(
            "the stage's output_dir is unknown (neither --output_dir in args nor output_dir in its config file), "
            "and a requeued job must find its checkpoints there: pass --output_dir=... in args or output_dir=..."
        )
    resume = (flag_value(cfg.args, "resume") or "false").lower() in ("true", "1", "yes")
    return args, (workdir / output_dir).resolve(), resume


def make_executor(
    cluster: ClusterConfig, partition: str | None, qos: str | None, job_name: str
) -> submitit.SlurmExecutor | submitit.LocalExecutor:
    if cluster.executor == "local":
        ex = submitit.LocalExecutor(folder=cluster.folder, max_num_timeout=cluster.max_requeues)
        ex.update_parameters(
            timeout_min=cluster.timeout_min,
            gpus_per_node=cluster.gpus_per_node,
            tasks_per_node=1,
            setup=list(cluster.setup),
            signal_delay_s=cluster.signal_delay_s,
        )
        return ex
    ex = submitit.SlurmExecutor(folder=cluster.folder, max_num_timeout=cluster.max_requeues)
    params: dict[str, Any] = {
        "job_name": job_name,
        "partition": partition,
        "account": cluster.account,
        "qos": qos,
        "nodes": cluster.nodes,
        "ntasks_per_node": 1,  # one task per node; accelerate starts the per-GPU processes
        "gres": f"gpu:{cluster.gpus_per_node}" if cluster.gpus_per_node else None,  # a recording may need none
        "cpus_per_task": cluster.cpus_per_task,
        "mem": f"{cluster.mem_gb}GB" if cluster.mem_gb else None,
        "time": cluster.timeout_min,
        "constraint": cluster.constraint,
        "setup": list(cluster.setup),
        "signal_delay_s": cluster.signal_delay_s,
        # submitit requeues with `scontrol requeue`, which SLURM allows only for requeueable jobs
        "additional_parameters": {"requeue": True, **cluster.additional_parameters},
    }
    ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return ex


def submit(cfg: SubmitConfig, workdir: Path | None = None) -> list[submitit.Job]:
    """Check, then submit the stage: one job, or two (dual queue) that share one output_dir claim; for `record`, the
    array's tasks (none when the recording is already there)."""
    workdir = (workdir or Path.cwd()).resolve()
    if cfg.stage == "record":
        return submit_recording(cfg, workdir)
    args, output_dir, resume = prepare(cfg, workdir)
    cluster = cfg.cluster
    queues = [(cluster.partition, cluster.qos)]
    if cluster.second_partition is not None:
        queues.append((cluster.second_partition, cluster.second_qos))
    job = StageJob(
        stage=cfg.stage,
        module=STAGES[cfg.stage].module,
        args=args,
        output_dir=output_dir,
        workdir=workdir,
        gpus_per_node=cluster.gpus_per_node,
        nodes=cluster.nodes,
        max_requeues=cluster.max_requeues,
        stop_grace_s=cluster.signal_delay_s / 2,
        resume=resume,
        claim_token=uuid.uuid4().hex if len(queues) > 1 else None,
    )
    jobs = []
    for partition, qos in queues:
        executor = make_executor(cluster, partition, qos, job_name=f"hlrp-{cfg.stage}")
        jobs.append(executor.submit(job))
        logger.info("submitted %s to %s: job %s", cfg.stage, partition or cluster.executor, jobs[-1].job_id)
    return jobs


# ------------------------------------------------------------------------------------------------ recording array


def check_recording(cfg: SubmitConfig, workdir: Path) -> list[str]:
    """Check an array submission's own settings; so101-twin-record's flags, to which the plan adds the rest."""
    check_cluster(cfg)
    cluster = cfg.cluster
    if cluster.second_partition is not None:
        raise SettingsRefused("--stage=record has no dual queue: set --cluster.second_partition=null")
    if cluster.nodes != 1:
        raise SettingsRefused(f"--cluster.nodes={cluster.nodes}: each task of a recording array runs on one node")
    if cfg.output_dir is not None:
        raise SettingsRefused("--output_dir is not for --stage=record: the recording goes to its --dataset.root")
    for name in RECORD_FLAGS:
        if flag_value(cfg.args, name) is not None:
            raise SettingsRefused(f"--{name} is so101-submit's to set, not a so101-twin-record flag: use --array_tasks")
    config_path = flag_value(cfg.args, "config_path")
    if config_path is not None and not (workdir / config_path).is_file():
        raise SettingsRefused(f"so101-twin-record's --config_path={config_path} not found (looked in {workdir})")
    return list(cfg.args)


def plan_recording(args: Sequence[str], array_tasks: int | None, workdir: Path) -> dict:
    """Run the recording's plan (record_array): it refuses what so101-twin-record would refuse, and stages the
    recording, in a process of its own, so that this command never imports the twin."""
    tasks = [] if array_tasks is None else [f"--array_tasks={array_tasks}"]
    run = subprocess.run(
        [sys.executable, "-m", STAGES["record"].module, *tasks, *args],
        cwd=workdir,
        capture_output=True,
        text=True,
    )
    plans = [line for line in run.stdout.splitlines() if line.startswith(PLAN_PREFIX)]
    if run.returncode != 0 or not plans:
        lines = [line.strip() for line in run.stderr.splitlines() if line.strip()]
        lines = lines or [line.strip() for line in run.stdout.splitlines() if line.strip()] or ["no output"]
        # its last line says why: a refusal ("record_array.py: ..."), an exception's, or the parser's ("error: ...")
        raise SettingsRefused(f"--stage=record: {WHO_SAYS.sub('', lines[-1])}")
    return json.loads(plans[-1].removeprefix(PLAN_PREFIX))


def submit_recording(cfg: SubmitConfig, workdir: Path) -> list[submitit.Job]:
    """Check and stage the recording, then submit one array task per group of shards (nothing when it is recorded)."""
    args = check_recording(cfg, workdir)
    plan = plan_recording(args, cfg.array_tasks, workdir)
    if plan["already_recorded"]:
        logger.info("%s is already recorded with these settings (%d episodes): nothing to submit", plan["root"],
                    plan["episodes"])  # fmt: skip
        return []
    cluster, tasks, claim = cfg.cluster, plan["tasks"], uuid.uuid4().hex
    executor = make_executor(cluster, cluster.partition, cluster.qos, job_name="so101-record")
    jobs = []
    with executor.batch():  # one SLURM array
        for task in range(tasks):
            job = RecordTaskJob(
                stage="record",
                module=STAGES["record"].module,
                args=[f"--array_tasks={tasks}", f"--array_task={task}", f"--array_claim={claim}", *args],
                output_dir=Path(plan["root"]),
                workdir=workdir,
                max_requeues=cluster.max_requeues,
                stop_grace_s=cluster.signal_delay_s / 2,
            )
            jobs.append(executor.submit(job))
    logger.info("submitted %d tasks recording %d shards (%d already recorded) into %s: jobs %s", tasks,
                plan["shards"], plan["finished_shards"], plan["root"], ", ".join(j.job_id for j in jobs))  # fmt: skip
    return jobs


def wait_for_recording(jobs: Sequence[submitit.Job], root: Path) -> None:
    """Wait for every task (failing if one fails), then check that the last one merged."""
    for job in jobs:
        job.result()  # raises submitit.core.utils.FailedJobError with the task's last lines
    if not (root / "meta" / "info.json").exists():
        raise RuntimeError(f"every task ended but none merged into {root}: submit the same array again to merge")
    logger.info("recorded %s", root)


# ------------------------------------------------------------------------------------------------ dual queue


def _has_begun(job: submitit.Job) -> bool:
    # submitit's task writes its log as its first act (SLURM creates the file when the job starts); a
    # LocalExecutor job reports RUNNING already while its setup lines run, so the state alone cannot tell
    return job.paths.stdout.exists() or job.paths.result_pickle.exists()


def job_phase(job: submitit.Job) -> str:
    """The job's progress: started (running or finished), gone (ended without starting, e.g. cancelled), waiting."""
    state = job.state.upper()
    if state.startswith(("RUNNING", "COMPLETING")) and _has_begun(job):
        return "started"
    if job.done():
        return "started" if _has_begun(job) else "gone"
    return "waiting"


def keep_first_started(
    jobs: Sequence[submitit.Job],
    poll_s: float = 60.0,
    timeout_s: float | None = None,
    labels: Sequence[str] | None = None,
) -> submitit.Job:
    """Wait until one of the jobs starts (or finishes), cancel the others and return it.

    Works with any submitit jobs (SLURM, local). If several are seen started at the same look, the first in
    `jobs` is kept. Raises RuntimeError if every job ended without starting, TimeoutError after timeout_s
    (then nothing is cancelled).
    """
    labels = list(labels) if labels is not None else [str(job.job_id) for job in jobs]
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        for job in jobs:
            job.get_info(mode="force")  # one fresh sacct call rather than submitit's slowing-down cache
        phases = [job_phase(job) for job in jobs]
        if "started" in phases:
            win = phases.index("started")
            for i, job in enumerate(jobs):
                if i != win and phases[i] != "gone":
                    job.cancel(check=False)  # it may have ended meanwhile: nothing to cancel then
            logger.info(
                "dual queue: %s (job %s) started first; cancelled %s",
                labels[win],
                jobs[win].job_id,
                ", ".join(f"{labels[i]} (job {jobs[i].job_id})" for i in range(len(jobs)) if i != win) or "none",
            )
            return jobs[win]
        if all(phase == "gone" for phase in phases):
            states = ", ".join(f"{label}: {job.state}" for label, job in zip(labels, jobs, strict=True))
            raise RuntimeError(f"every job ended without starting ({states})")
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"no job started within {timeout_s} s: {[job.job_id for job in jobs]}")
        time.sleep(poll_s)


# ------------------------------------------------------------------------------------------------ command


def submit_cli(cfg: SubmitConfig, trailing: Sequence[str] = ()) -> None:
    """Submit, wait for the dual queue's winner and, with --wait=true, for the job; `trailing`: flags after `--`."""
    if trailing:
        cfg = replace(cfg, args=[*cfg.args, *trailing])
    jobs = submit(cfg)
    cluster = cfg.cluster
    if cfg.stage == "record":
        for job in jobs:
            logger.info("job %s: log %s", job.job_id, job.paths.stdout)
        if cfg.wait and jobs:
            wait_for_recording(jobs, jobs[0].submission().function.output_dir)
        return
    if len(jobs) > 1:
        labels = [f"{cluster.partition}", f"{cluster.second_partition}"]
        ids = ", ".join(job.job_id for job in jobs)
        logger.info("dual queue: waiting for one of jobs %s to start", ids)
        try:
            job = keep_first_started(jobs, poll_s=cluster.poll_s, labels=labels)
        except KeyboardInterrupt:
            logger.warning(
                "stopped watching jobs %s: both stay queued; the later one to start exits at once (it finds the "
                "output_dir claimed), or scancel it",
                ids,
            )
            raise
    else:
        job = jobs[0]
    logger.info("job %s: log %s", job.job_id, job.paths.stdout)
    if cfg.wait:
        status = job.result()  # raises submitit.core.utils.FailedJobError with the stage's last lines
        logger.info("job %s finished with status %s", job.job_id, status)


def main() -> None:
    try:
        from lerobot.configs import parser
    except ModuleNotFoundError as err:
        raise missing_extra(CLUSTER, err) from None

    # force: importing LeRobot's parser already gave the root logger a WARNING-level handler, which hid every line
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    prepare_command_line()
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    # the stage's flags must not reach this command's parser (its own --config_path would be taken for ours)
    sys.argv[1:], trailing = argv[:cut], argv[cut + 1 :]
    parser.wrap()(submit_cli)(trailing=trailing)


if __name__ == "__main__":
    main()
