r"""so101-submit: a stage on SLURM (or on this machine) through submitit, requeued and resumed.

    so101-submit --config_path=configs/cluster_lrz_x100.yaml --stage=laq \
        --args='[--config_path=configs/hlrp_laq_oxe.yaml]'
    so101-submit --config_path=configs/cluster_mcml_x100.yaml --stage=trunk --args='[--config_path=...]' --wait=true
    so101-submit --config_path=configs/cluster_local.yaml --stage=lerobot --args='[--policy.type=hlrp, ...]'
    so101-submit --config_path=configs/cluster_local.yaml --stage=laq -- --config_path=configs/hlrp_laq_twin.yaml

The stage command's own flags go in `--args='[...]'` or after `--` (everything after it, unparsed: values with
commas or brackets need no quoting there); both together: `--args` first.

Stages: `laq` (lerobot_policy_hlrp.pretrain.train_laq), `trunk` (lerobot_policy_hlrp.pretrain.train_trunk), `lerobot`
(lerobot.scripts.lerobot_train). Needs so101_commands' `cluster` extra (submitit, PyYAML).
The job is a `StageJob` (a submitit Checkpointable): on every node it starts `accelerate launch` over the node's GPUs
(a plain `python -m <module>` for one process). When SLURM announces the end of the job (timeout or preemption,
submitit's `--signal=USR2@<signal_delay_s>`), submitit calls `StageJob.checkpoint`, which stops the stage and
requeues the same job with the stage's resume flag; the requeued job continues from `<output_dir>/checkpoints/last`.

Dual queue (`cluster.second_partition`): the same job goes to two partitions; `keep_first_started` cancels the one
that starts later. The two twins also claim the output directory at start, so if so101-submit is stopped before a
winner is known, the later twin exits at once instead of training into the same directory.

Parsed with `lerobot.configs.parser.wrap` like every suite command, imported in `main` only (a job start unpickles
this module). A suite-wide command: it launches HLRP's stages and lerobot-train alike.
"""

import codecs
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from so101_run_infra.atomic import move_aside
from so101_run_infra.cli import prepare_command_line
from so101_run_infra.extras import missing_extra

from .extras import CLUSTER

try:
    import cloudpickle
    import submitit
    import yaml
    from submitit.helpers import Checkpointable, DelayedSubmission
except ModuleNotFoundError as err:  # installed without the `cluster` extra
    raise missing_extra(CLUSTER, err) from None

logger = logging.getLogger("so101-submit")
# submitit pickles the job with cloudpickle; by value, so that a job start (which unpickles it before submitit's
# USR2 handler is up) imports only submitit and so101_run_infra, never the stage's own packages: importing a
# policy plugin loads torch and LeRobot, seconds to tens of seconds on a busy node.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@dataclass(frozen=True)
class Stage:
    module: str
    needs_config: bool  # its config file carries the run; lerobot-train can be driven by flags alone


STAGES: dict[str, Stage] = {
    "laq": Stage("lerobot_policy_hlrp.pretrain.train_laq", needs_config=True),
    "trunk": Stage("lerobot_policy_hlrp.pretrain.train_trunk", needs_config=True),
    "lerobot": Stage("lerobot.scripts.lerobot_train", needs_config=False),
}
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
    stage: str = ""  # "laq" | "trunk" | "lerobot"
    # The stage command's own flags, e.g. '[--config_path=x.yaml]'; or give them after `--` on the command line
    args: list[str] = field(default_factory=list)
    # The stage's output_dir: taken from --output_dir in args, else from the stage's config file; set here, it
    # is passed on as --output_dir (it must agree with args). Needed to resume after a requeue.
    output_dir: Path | None = None
    wait: bool = False  # block until the job ends and fail if it fails


# ------------------------------------------------------------------------------------------------ flags


def flag_value(args: Sequence[str], name: str) -> str | None:
    """The value of `--name=value` or `--name value` in args (the last one wins, as in argparse)."""
    value = None
    for i, arg in enumerate(args):
        if arg.startswith(f"--{name}="):
            value = arg.split("=", 1)[1]
        elif arg == f"--{name}" and i + 1 < len(args) and not args[i + 1].startswith("--"):
            value = args[i + 1]
    return value


def without_flag(args: Sequence[str], name: str) -> list[str]:
    out: list[str] = []
    skip = False
    for i, arg in enumerate(args):
        if skip:
            skip = False
        elif arg.startswith(f"--{name}="):
            continue
        elif arg == f"--{name}":
            skip = i + 1 < len(args) and not args[i + 1].startswith("--")
        else:
            out.append(arg)
    return out


def resume_checkpoint(stage: str, output_dir: Path) -> Path:
    """What must exist for the stage to resume: lerobot-train's --config_path target, or checkpoints/last."""
    last = output_dir / "checkpoints" / "last"
    return last / "pretrained_model" / "train_config.json" if stage == "lerobot" else last


# ------------------------------------------------------------------------------------------------ the job


def launch_command(
    module: str,
    args: Sequence[str],
    gpus_per_node: int,
    nodes: int = 1,
    machine_rank: int = 0,
    main_host: str | None = None,
    main_port: int = 29500,
) -> list[str]:
    """The command one node runs: accelerate launch over all GPUs of all nodes, or plain python for one process."""
    processes = max(gpus_per_node, 1) * nodes
    if processes == 1:
        return [sys.executable, "-m", module, *args]
    # `python -m accelerate.commands.launch` is `accelerate launch` of the job's own interpreter (no PATH lookup);
    # --multi_gpu so that a default accelerate config on the cluster cannot change the distributed type
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", f"--num_processes={processes}"]
    cmd += [f"--num_machines={nodes}", f"--machine_rank={machine_rank}", f"--main_process_port={main_port}"]
    if nodes > 1:
        if not main_host:
            raise ValueError("a multi-node launch needs the main node's host name")
        cmd.append(f"--main_process_ip={main_host}")
    return [*cmd, "-m", module, *args]


def _child_setup() -> None:
    # SLURM signals every process of the job step; the stage must not die of the preemption signal before
    # StageJob.checkpoint has stopped it in order (the ignored disposition survives exec, also into workers).
    signal.signal(signal.Signals[f"SIG{submitit.JobEnvironment.USR_SIG}"], signal.SIG_IGN)
    if sys.platform.startswith("linux"):  # and it must not outlive this task if SLURM or the controller kills it
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG


def _job_environment() -> submitit.JobEnvironment | None:
    try:
        return submitit.JobEnvironment()
    except RuntimeError:  # called directly, not by a submitit job
        return None


@dataclass
class StageJob(Checkpointable):
    """One HLRP stage as a requeueable submitit job (its __call__ returns the stage's exit status)."""

    stage: str
    module: str
    args: list[str]  # the first run's args; a resumed run derives its own from them (see stage_args)
    output_dir: Path  # absolute
    workdir: Path  # the stage runs here (relative paths in args are relative to it)
    gpus_per_node: int = 0
    nodes: int = 1
    max_requeues: int = 3
    stop_grace_s: float = 60.0
    resume: bool = False
    requeues: int = 0
    claim_token: str | None = None  # shared by dual-queue twins
    _proc: subprocess.Popen | None = field(default=None, init=False, repr=False, compare=False)
    _exited: threading.Event | None = field(default=None, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_proc": None, "_exited": None}

    def stage_args(self) -> list[str]:
        """The stage's flags: the first run's, or its resume form once a checkpoint exists."""
        checkpoint = resume_checkpoint(self.stage, self.output_dir)
        if not self.resume or not checkpoint.exists():
            return list(self.args)
        if self.stage == "lerobot":
            # LeRobot's resume form: the saved train config carries every other setting of the run
            return [f"--config_path={checkpoint}", "--resume=true"]
        return [*without_flag(self.args, "resume"), "--resume=true"]

    def _set_aside_unresumable_output(self) -> None:
        """A run stopped before its first checkpoint starts over; the stages refuse an existing output_dir then."""
        checkpoint = resume_checkpoint(self.stage, self.output_dir)
        if not self.resume or checkpoint.exists() or not self.output_dir.exists():
            return
        aside = self.output_dir.with_name(f"{self.output_dir.name}.no-checkpoint-{time.strftime('%Y%m%d-%H%M%S')}")
        logger.warning(
            "nothing to resume (%s is missing): moved %s to %s, starting over", checkpoint, self.output_dir, aside
        )
        move_aside(self.output_dir, aside)

    def command(self, env: submitit.JobEnvironment | None = None) -> list[str]:
        rank, host, port = 0, None, 29500
        if env is not None:
            rank, host = env.node, env.hostnames[0]
            # two multi-process jobs sharing a node must not both listen on accelerate's default port
            port = 20000 + int(re.sub(r"\D", "", env.job_id) or 0) % 20000
        return launch_command(self.module, self.stage_args(), self.gpus_per_node, self.nodes, rank, host, port)

    def _claim(self, job_id: str) -> bool:
        """True if this job may run: it is the first of its dual-queue twins to start (or a requeue of it)."""
        if self.claim_token is None:
            return True
        claim = self.output_dir.parent / f".{self.output_dir.name}.claim-{self.claim_token}"
        claim.parent.mkdir(parents=True, exist_ok=True)
        tmp = claim.with_name(f"{claim.name}.{job_id}.{os.getpid()}")
        tmp.write_text(job_id)
        try:
            os.link(tmp, claim)  # atomic, also on NFS, and the claim is complete the moment it is visible
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
        owner = claim.read_text()
        if owner != job_id:
            logger.warning("twin job %s already runs %s: this job (%s) exits without running", owner, claim, job_id)
        return owner == job_id

    def __call__(self) -> int:
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        env = _job_environment()
        job_id = env.job_id if env is not None else str(os.getpid())
        if not self._claim(job_id):
            return 0
        if env is not None and "SUBMITIT_FOLDER" in os.environ:
            marker = env.paths.folder / f"{job_id}_{env.global_rank}_hlrp_started"
            if marker.exists() and not self.resume:
                # SLURM itself restarted the job (node failure, preemption in REQUEUE mode): it runs the first
                # submission again, not the one checkpoint() would have written
                logger.info("job %s was restarted by the scheduler: resuming", job_id)
                self.resume = True
            marker.touch()
        if env is None or env.global_rank == 0:  # one rename per job, not one per node
            self._set_aside_unresumable_output()
        cmd = self.command(env)
        logger.info("job %s, requeue %d/%d, running: %s", job_id, self.requeues, self.max_requeues, " ".join(cmd))
        self._proc = subprocess.Popen(
            cmd,
            cwd=self.workdir,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            process_group=0,  # its own group: stopping it reaches accelerate's workers too
            preexec_fn=_child_setup,
        )
        tail: deque[str] = deque(maxlen=200)
        pump = threading.Thread(target=_pump, args=(self._proc.stdout, tail), daemon=True)
        pump.start()
        # A thread reaps the stage: a main thread blocked in Popen.wait() holds Popen's wait lock, so the wait
        # of checkpoint(), which submitit runs in a signal handler on this thread, could never see it exit.
        self._exited = threading.Event()
        threading.Thread(target=_reap, args=(self._proc, self._exited), daemon=True).start()
        try:
            while not self._exited.wait(timeout=1.0):
                pass
        finally:
            self._stop()  # also on KeyboardInterrupt (local cancel) or SystemExit (requeue)
        status = self._proc.returncode
        pump.join(timeout=10)  # its last output (orphaned workers could hold the pipe open: do not wait for them)
        if status != 0:
            last = "".join(tail).splitlines()[-40:]
            raise RuntimeError(f"{' '.join(cmd)}\nexited with status {status}; its last lines:\n" + "\n".join(last))
        return status

    def _stop(self) -> None:
        proc, exited = self._proc, self._exited
        if proc is None or exited is None or exited.is_set():
            return
        for sig, grace in ((signal.SIGTERM, self.stop_grace_s), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            if exited.wait(timeout=grace):
                return
            logger.warning("stage did not stop within %.0f s of %s", grace, sig.name)

    def checkpoint(self, *args: Any, **kwargs: Any) -> DelayedSubmission | None:
        """Called by submitit on USR2 (timeout or preemption): stop the stage and requeue it with its resume flag."""
        self._stop()
        if self.requeues >= self.max_requeues:
            logger.error("not requeuing: this job was already requeued %d times (max_requeues)", self.requeues)
            return None  # submitit then ends the job as failed
        logger.info("requeuing with resume (%d/%d)", self.requeues + 1, self.max_requeues)
        return DelayedSubmission(replace(self, resume=True, requeues=self.requeues + 1))


def _reap(proc: subprocess.Popen, exited: threading.Event) -> None:
    proc.wait()
    exited.set()


def _pump(src: Any, tail: deque[str]) -> None:
    """Copy the stage's output into this job's log as it comes (chunks: tqdm's \\r lines have no newline)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for chunk in iter(lambda: src.read1(65536), b""):
        text = decoder.decode(chunk)
        sys.stdout.write(text)
        sys.stdout.flush()
        tail.append(text)


# ------------------------------------------------------------------------------------------------ submission


def _config_output_dir(config_path: Path) -> str | None:
    try:
        data = yaml.safe_load(config_path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    value = data.get("output_dir") if isinstance(data, dict) else None
    return str(value) if value else None


def prepare(cfg: SubmitConfig, workdir: Path | None = None) -> tuple[list[str], Path, bool]:
    """Check the submission before anything is submitted.

    Returns the stage args (without --resume), its absolute output_dir, and whether the args asked to resume.
    """
    workdir = workdir or Path.cwd()
    cluster = cfg.cluster
    if cfg.stage not in STAGES:
        raise ValueError(f"unknown stage {cfg.stage!r}: use --stage= one of {', '.join(STAGES)}")
    if cluster.executor not in EXECUTORS:
        raise ValueError(f"unknown cluster.executor {cluster.executor!r}: one of {', '.join(EXECUTORS)}")
    for key in ("partition", "second_partition", "account", "qos", "second_qos", "constraint"):
        value = getattr(cluster, key)
        if value is not None and PLACEHOLDER.search(str(value)):
            raise ValueError(f"cluster.{key} is still the placeholder {value!r}: set it in the cluster config")
    for line in cluster.setup:
        if PLACEHOLDER.search(line):
            raise ValueError(f"cluster.setup line {line!r} still holds a placeholder: edit it in the cluster config")
    if cluster.executor == "slurm" and cluster.gpus_per_node < 1:
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
        "gres": f"gpu:{cluster.gpus_per_node}",
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
    """Check, then submit the stage: one job, or two (dual queue) that share one output_dir claim."""
    workdir = (workdir or Path.cwd()).resolve()
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

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    prepare_command_line()
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    # the stage's flags must not reach this command's parser (its own --config_path would be taken for ours)
    sys.argv[1:], trailing = argv[:cut], argv[cut + 1 :]
    parser.wrap()(submit_cli)(trailing=trailing)


if __name__ == "__main__":
    main()
