"""The job so101-submit submits: one stage as a requeueable submitit job (`StageJob`, a submitit Checkpointable), or
one task of a recording array (`RecordTaskJob`).

On every node it starts `accelerate launch` over the node's GPUs (a plain `python -m <module>` for one process). When
SLURM announces the end of the job (timeout or preemption, submitit's `--signal=USR2@<signal_delay_s>`), submitit
calls `StageJob.checkpoint`, which stops the stage and requeues the same job with the stage's resume flag; the
requeued job continues from `<output_dir>/checkpoints/last`. Dual-queue twins claim the output directory at start, so
the later one exits at once instead of training into the same directory.
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
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from so101_run_infra.atomic import claim_once, move_aside
from so101_run_infra.extras import missing_extra

from .extras import CLUSTER

try:
    import cloudpickle
    import submitit
    from submitit.helpers import Checkpointable, DelayedSubmission
except ModuleNotFoundError as err:  # installed without the `cluster` extra
    raise missing_extra(CLUSTER, err) from None

logger = logging.getLogger("so101-submit")
# submitit pickles the job with cloudpickle; by value, so that a job start (which unpickles it before submitit's
# USR2 handler is up) imports only submitit and so101_run_infra, never the stage's own packages: importing a
# policy plugin loads torch and LeRobot, seconds to tens of seconds on a busy node.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


# ------------------------------------------------------------------------------------------------ the stage's flags


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
        owner = claim_once(claim, job_id)
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


@dataclass
class RecordTaskJob(StageJob):
    """One task of so101-submit's recording array (`--stage=record`): the recorder keeps every finished shard, so
    running the same command again is its resume. Unlike a training stage's job it adds no resume flag, never sets
    its output (the dataset root, which another task may just have merged) aside, and is one plain process, as
    so101-twin-record is, whatever GPUs the task has."""

    def stage_args(self) -> list[str]:
        return list(self.args)

    def _set_aside_unresumable_output(self) -> None:
        return None

    def command(self, env: submitit.JobEnvironment | None = None) -> list[str]:
        return [sys.executable, "-m", self.module, *self.args]


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
