"""so101-submit (so101_commands.submit): SLURM submission scripts without SLURM, local jobs end to end,
requeue with resume, the dual queue, and the errors raised before anything is submitted."""

import copy
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import draccus
import pytest
import submitit
from clitools import run_cli

from so101_commands.stage_job import RecordTaskJob, StageJob, launch_command
from so101_commands.submit import ClusterConfig, SubmitConfig, keep_first_started, make_executor, prepare, submit

ROOT = Path(__file__).resolve().parent.parent

# A stand-in for an HLRP stage: counts steps into <output_dir>/checkpoints/last/state.json (atomically, as the
# real trainers do), refuses a non-empty output_dir unless resuming (as they do), and resumes with --resume=true.
# --stop_at=K ends a first run after step K (as if killed there); --hang_at=K waits there until it is stopped.
FAKE_STAGE = r"""
import json, os, signal, sys, time
from pathlib import Path

opts = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
out = Path(opts["output_dir"])
ckpt = out / "checkpoints" / "last" / "state.json"
resume = opts.get("resume") == "true"
if resume:
    state = json.loads(ckpt.read_text())
elif out.exists() and any(out.iterdir()):
    sys.exit(f"{out} is not empty: pass --resume=true")
else:
    state = {"step": 0, "starts": [], "steps_run": 0}
state["starts"].append(state["step"])
state["usr2_ignored"] = signal.getsignal(signal.SIGUSR2) == signal.SIG_IGN
print(f"starting at step {state['step']}", flush=True)
if "fail" in opts:
    print("boom: " + opts["fail"], flush=True)
    sys.exit(3)
while state["step"] < int(opts.get("steps", 10)):
    state["step"] += 1
    state["steps_run"] += 1
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    ckpt.with_suffix(".tmp").write_text(json.dumps(state))
    os.replace(ckpt.with_suffix(".tmp"), ckpt)
    if not resume and state["step"] == int(opts.get("stop_at", -1)):
        sys.exit(0)
    if not resume and state["step"] == int(opts.get("hang_at", -1)):
        print("hanging until stopped", flush=True)
        time.sleep(600)
print(f"done at step {state['step']}", flush=True)
"""


@pytest.fixture
def fake_stage(tmp_path, monkeypatch):
    """The stand-in as module `hlrp_fake_stage`; PYTHONPATH (ahead of the caller's) reaches local jobs, which copy this
    environment."""
    (tmp_path / "hlrp_fake_stage.py").write_text(FAKE_STAGE)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p))
    return tmp_path


def stage_job(tmp_path: Path, *extra: str, **kw) -> StageJob:
    out = tmp_path / "run"
    return StageJob(
        stage="laq",
        module="hlrp_fake_stage",
        args=[f"--output_dir={out}", "--steps=8", *extra],
        output_dir=out,
        workdir=tmp_path,
        **kw,
    )


def state(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "run" / "checkpoints" / "last" / "state.json").read_text())


def wait_until(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


# ------------------------------------------------------------------------------------------------ SLURM, faked

FAKE_SLURM = {
    "srun": "exit 0\n",  # SlurmExecutor only checks that srun exists
    "sbatch": 'n=$(( $(cat "$FAKE_SLURM/next_id") + 1 )); echo $n > "$FAKE_SLURM/next_id"\n'
    'echo "$@" >> "$FAKE_SLURM/sbatch_calls"; echo "Submitted batch job $n"\n',
    "sacct": 'cat "$FAKE_SLURM/sacct.txt"\n',
    "scancel": 'echo "$@" >> "$FAKE_SLURM/scancelled"\n',
}


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """sbatch/srun/sacct/scancel stand-ins on PATH: submitit's own SlurmExecutor writes and 'submits' the script."""
    bin_dir = tmp_path / "fake_slurm"
    bin_dir.mkdir()
    for name, body in FAKE_SLURM.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body)
        (bin_dir / name).chmod(0o755)
    # job ids unique per test: SlurmJob's sacct watcher is shared by every SlurmJob of the process
    (bin_dir / "next_id").write_text(str(5_000_000 + (time.time_ns() // 1000) % 1_000_000 * 10))
    (bin_dir / "sacct.txt").write_text("JobID|State|NodeList\n")
    monkeypatch.setenv("FAKE_SLURM", str(bin_dir))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


def lrz_config(tmp_path: Path, *flags: str) -> SubmitConfig:
    stage_cfg = tmp_path / "hlrp_laq.yaml"
    stage_cfg.write_text("output_dir: outputs/laq_run\nsteps: 100\n")
    return draccus.parse(
        SubmitConfig,
        config_path=ROOT / "configs" / "cluster_lrz_x100.yaml",
        args=[
            "--stage=laq",
            "--args=[--config_path=hlrp_laq.yaml, --steps=100]",
            "--cluster.account=pn57pi",
            "--cluster.setup=[module load slurm_setup, source /dss/hlrp/.venv/bin/activate]",
            f"--cluster.folder={tmp_path}/logs/%j",
            *flags,
        ],
    )


def test_slurm_script_has_resources_setup_requeue_and_the_stage_command(tmp_path, fake_slurm):
    jobs = submit(lrz_config(tmp_path), workdir=tmp_path)
    assert len(jobs) == 2  # dual queue: LRZ's partition and MCML's
    assert len((fake_slurm / "sbatch_calls").read_text().splitlines()) == 2
    lrz, mcml = (job.paths.submission_file.read_text() for job in jobs)
    for script in (lrz, mcml):
        for line in (
            "#SBATCH --job-name=hlrp-laq",
            "#SBATCH --gres=gpu:4",
            "#SBATCH --nodes=1",
            "#SBATCH --ntasks-per-node=1",
            "#SBATCH --cpus-per-task=64",
            "#SBATCH --mem=384GB",
            "#SBATCH --time=1440",
            "#SBATCH --account=pn57pi",
            "#SBATCH --requeue",  # scontrol requeue (submitit's requeue) needs a requeueable job
            "#SBATCH --signal=USR2@180",  # submitit's preemption/timeout signal, signal_delay_s before the end
            "#SBATCH --open-mode=append",  # a requeued job's log goes on in the same file
            "module load slurm_setup",
            "source /dss/hlrp/.venv/bin/activate",
        ):
            assert line in script.splitlines(), (line, script)
        # the setup runs before the job's task, which srun starts once per node
        lines = script.splitlines()
        command = next(i for i, line in enumerate(lines) if line.startswith("srun "))
        assert lines.index("source /dss/hlrp/.venv/bin/activate") < command
        assert lines[command].endswith(f"-m submitit.core._submit {tmp_path}/logs/%j")
    assert "#SBATCH --partition=lrz-hgx-h100-94x4" in lrz and "--qos" not in lrz
    assert "#SBATCH --partition=mcml-hgx-h100-94x4" in mcml and "#SBATCH --qos=mcml" in mcml.splitlines()

    # what the task runs: the pickled StageJob, the same for both twins
    first, second = (job.submission().function for job in jobs)
    assert isinstance(first, StageJob) and first == second and first.claim_token is not None
    cmd = first.command()
    assert cmd[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert "--num_processes=4" in cmd and "--num_machines=1" in cmd and "--multi_gpu" in cmd
    assert cmd[cmd.index("-m", 3) :] == [
        "-m",
        "lerobot_policy_hlrp.commands.train_laq",
        "--config_path=hlrp_laq.yaml",
        "--steps=100",
    ]
    assert first.output_dir == tmp_path / "outputs" / "laq_run"  # from the stage's config file
    assert first.workdir == tmp_path and first.max_requeues == 5


def test_single_queue_and_output_dir_passed_on(tmp_path, fake_slurm):
    cfg = lrz_config(tmp_path, "--cluster.second_partition=null", f"--output_dir={tmp_path}/elsewhere")
    (job,) = submit(cfg, workdir=tmp_path)
    function = job.submission().function
    assert function.claim_token is None
    assert function.args[-1] == f"--output_dir={tmp_path}/elsewhere" and function.output_dir == tmp_path / "elsewhere"


def test_multi_node_launch_uses_the_job_environment(tmp_path, monkeypatch):
    # what SLURM sets on the second node of a 2-node job; submitit's JobEnvironment reads it
    for key, value in {
        "SUBMITIT_EXECUTOR": "slurm",
        "SLURM_JOB_ID": "5519374",
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_NODEID": "1",
        "SLURM_PROCID": "1",
        "SLURM_JOB_NODELIST": "mcml-hgx-h100-[003-004]",
    }.items():
        monkeypatch.setenv(key, value)
    job = stage_job(tmp_path, gpus_per_node=4, nodes=2)
    cmd = job.command(submitit.JobEnvironment())
    for flag in ("--num_processes=8", "--num_machines=2", "--machine_rank=1", "--main_process_ip=mcml-hgx-h100-003"):
        assert flag in cmd
    assert "--main_process_port=39374" in cmd  # from the job id: two jobs on one node do not collide
    assert launch_command("m", ["--a=1"], gpus_per_node=1) == [sys.executable, "-m", "m", "--a=1"]
    assert launch_command("m", [], gpus_per_node=0) == [sys.executable, "-m", "m"]


def test_dual_queue_on_slurm_states_keeps_the_job_that_starts(tmp_path, fake_slurm):
    jobs = submit(lrz_config(tmp_path), workdir=tmp_path)
    lrz, mcml = (job.job_id for job in jobs)
    sacct = fake_slurm / "sacct.txt"
    sacct.write_text(f"JobID|State|NodeList\n{lrz}|PENDING|None assigned\n{mcml}|PENDING|None assigned\n")

    def mcml_starts():
        jobs[1].paths.stdout.parent.mkdir(parents=True, exist_ok=True)
        jobs[1].paths.stdout.write_text("")  # SLURM creates the job's output file when it starts
        sacct.write_text(
            f"JobID|State|NodeList\n{lrz}|PENDING|None assigned\n{mcml}|RUNNING|mcml-hgx-h100-003\n"
            f"{mcml}.batch|RUNNING|mcml-hgx-h100-003\n"
        )

    threading.Timer(1.0, mcml_starts).start()
    started = time.monotonic()
    winner = keep_first_started(jobs, poll_s=0.2, timeout_s=20, labels=["lrz", "mcml"])
    assert winner is jobs[1] and time.monotonic() - started >= 1.0
    assert (fake_slurm / "scancelled").read_text().split() == [lrz]

    # both cancelled before either started: nothing to keep
    jobs = submit(lrz_config(tmp_path), workdir=tmp_path)
    sacct.write_text("JobID|State|NodeList\n" + "".join(f"{j.job_id}|CANCELLED by 4711|None\n" for j in jobs))
    with pytest.raises(RuntimeError, match="every job ended without starting"):
        keep_first_started(jobs, poll_s=0.2, timeout_s=20)


# ------------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("flags", "error", "match"),
    [
        (["--stage=laqq"], ValueError, "unknown stage 'laqq'"),
        (["--args=[--steps=100]"], ValueError, "stage laq needs its config file: add --config_path"),
        (["--args=[--config_path=configs/nope.yaml]"], FileNotFoundError, "configs/nope.yaml not found"),
        (["--cluster.second_partition=lrz-hgx-h100-94x4"], ValueError, "same partition twice"),
        (["--cluster.gpus_per_node=0"], ValueError, "gpus_per_node=0"),
        (["--cluster.account=<your_account>"], ValueError, "placeholder '<your_account>'"),
        (["--output_dir=other"], ValueError, "disagrees with --output_dir"),
        (["--args=[--config_path=no_output_dir.yaml]"], ValueError, "output_dir is unknown"),
        (["--cluster.executor=pbs"], ValueError, "unknown cluster.executor 'pbs'"),
        (["--cluster.timeout_min=2"], ValueError, "signal_delay_s=180 must be above 0 and below"),
    ],
)
def test_bad_input_is_refused_before_submitting(tmp_path, fake_slurm, flags, error, match):
    (tmp_path / "no_output_dir.yaml").write_text("steps: 3\n")
    cfg = lrz_config(tmp_path, "--args=[--config_path=hlrp_laq.yaml, --output_dir=mine]", *flags)
    with pytest.raises(error, match=match):
        submit(cfg, workdir=tmp_path)
    assert not (fake_slurm / "sbatch_calls").exists()


def test_shipped_configs_need_their_placeholders_replaced(tmp_path):
    stage_cfg = tmp_path / "c.yaml"
    stage_cfg.write_text("output_dir: out\n")
    for name in ("lrz_x100", "mcml_x100"):
        cfg = draccus.parse(
            SubmitConfig,
            config_path=ROOT / "configs" / f"cluster_{name}.yaml",
            args=["--stage=trunk", f"--args=[--config_path={stage_cfg}]"],
        )
        assert cfg.cluster.partition != cfg.cluster.second_partition and cfg.cluster.gpus_per_node == 4
        with pytest.raises(ValueError, match="<your_account>"):
            prepare(cfg, tmp_path)
    local = draccus.parse(
        SubmitConfig,
        config_path=ROOT / "configs" / "cluster_local.yaml",
        args=["--stage=lerobot", f"--args=[--config_path={stage_cfg}]"],
    )
    assert prepare(local, tmp_path) == ([f"--config_path={stage_cfg}"], tmp_path / "out", False)


@pytest.mark.parametrize(
    "stage_flags",
    [["--args=[--config_path=missing.yaml]"], ["--", "--config_path=missing.yaml"]],
    ids=["args", "dashes"],
)
def test_command_line_reports_bad_input(tmp_path, stage_flags):
    # the stage's flags as a list field or after `--`: either way the stage's --config_path, not so101-submit's
    command = ["so101-submit", f"--config_path={ROOT}/configs/cluster_local.yaml", "--stage=trunk", *stage_flags]
    result = run_cli(command, cwd=tmp_path, timeout=60, check=False)
    assert result.returncode != 0 and "--config_path=missing.yaml not found" in result.stderr


# ------------------------------------------------------------------------------------------------ the job


def test_checkpoint_resubmits_with_resume_and_the_resumed_run_continues(fake_stage):
    job = stage_job(fake_stage, "--stop_at=3", max_requeues=2)
    assert job() == 0  # the first run, ended after step 3 as if killed there
    assert state(fake_stage)["step"] == 3 and state(fake_stage)["usr2_ignored"]

    resubmission = job.checkpoint()
    assert isinstance(resubmission, submitit.helpers.DelayedSubmission)
    again = resubmission.function
    assert isinstance(again, StageJob) and again.resume and again.requeues == 1 and not job.resume
    assert again.stage_args()[-1] == "--resume=true" and "--resume=true" in again.command()
    assert resubmission.result() == 0
    assert state(fake_stage) | {"usr2_ignored": None} == {
        "step": 8,
        "starts": [0, 3],  # resumed at the stored step, not restarted
        "steps_run": 8,
        "usr2_ignored": None,
    }
    assert again.checkpoint().function.checkpoint() is None  # requeued max_requeues=2 times: no more


def test_lerobot_resume_form(tmp_path):
    job = StageJob(
        stage="lerobot",
        module="lerobot.scripts.lerobot_train",
        args=["--policy.type=hlrp", f"--output_dir={tmp_path}/run"],
        output_dir=tmp_path / "run",
        workdir=tmp_path,
        resume=True,
    )
    assert job.stage_args() == job.args  # no checkpoint yet: start over
    config = tmp_path / "run" / "checkpoints" / "last" / "pretrained_model" / "train_config.json"
    config.parent.mkdir(parents=True)
    config.write_text("{}")
    assert job.stage_args() == [f"--config_path={config}", "--resume=true"]


def test_a_run_stopped_before_its_first_checkpoint_starts_over(fake_stage):
    (fake_stage / "run" / "logs").mkdir(parents=True)  # what a stage writes before its first checkpoint
    job = stage_job(fake_stage, resume=True, requeues=1)
    assert job() == 0 and state(fake_stage)["starts"] == [0]
    (aside,) = fake_stage.glob("run.no-checkpoint-*")  # set aside, not deleted
    assert (aside / "logs").is_dir()


def test_a_failing_stage_raises_with_its_last_lines(fake_stage):
    with pytest.raises(RuntimeError, match=r"(?s)exited with status 3.*boom: no data"):
        stage_job(fake_stage, "--fail=no data")()


def test_dual_queue_twins_claim_the_output_dir(fake_stage, monkeypatch):
    job = stage_job(fake_stage, "--stop_at=2", claim_token="t1")
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")
    monkeypatch.setenv("SUBMITIT_LOCAL_JOB_ID", "101")
    assert job() == 0 and state(fake_stage)["starts"] == [0]
    monkeypatch.setenv("SUBMITIT_LOCAL_JOB_ID", "202")  # its twin, started later
    assert job() == 0 and state(fake_stage)["starts"] == [0]  # exited without running the stage
    monkeypatch.setenv("SUBMITIT_LOCAL_JOB_ID", "101")  # the first one, requeued
    assert job.checkpoint().result() == 0 and state(fake_stage)["starts"] == [0, 2]


def test_a_job_restarted_by_slurm_itself_resumes(fake_stage, monkeypatch):
    # SLURM's own requeue (node failure, preemption in REQUEUE mode) reruns the first pickle, without checkpoint()
    job = stage_job(fake_stage, "--stop_at=3")
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")
    monkeypatch.setenv("SUBMITIT_LOCAL_JOB_ID", "77")
    monkeypatch.setenv("SUBMITIT_FOLDER", str(fake_stage / "logs" / "%j"))
    (fake_stage / "logs" / "77").mkdir(parents=True)
    assert copy.deepcopy(job)() == 0 and state(fake_stage)["starts"] == [0]
    assert copy.deepcopy(job)() == 0
    assert state(fake_stage)["starts"] == [0, 3] and state(fake_stage)["step"] == 8


def local_executor(folder: Path, **params) -> submitit.LocalExecutor:
    ex = make_executor(ClusterConfig(executor="local", folder=folder, max_requeues=2), None, None, "hlrp-test")
    ex.update_parameters(**params)
    return ex


def test_local_job_is_signalled_requeued_and_resumes(fake_stage):
    # submitit's LocalExecutor sends USR2 signal_delay_s before timeout_min, as SLURM does: the stage hangs at
    # step 3 until then, StageJob.checkpoint stops it and submitit requeues the job with the resume flag
    ex = local_executor(fake_stage / "logs" / "%j", timeout_min=0.25, signal_delay_s=9)
    job = ex.submit(stage_job(fake_stage, "--hang_at=3", max_requeues=2))
    assert job.result() == 0
    assert state(fake_stage)["starts"] == [0, 3] and state(fake_stage)["step"] == 8
    assert state(fake_stage)["steps_run"] == 8
    log = job.stdout()
    assert "hanging until stopped" in log and "requeuing with resume (1/2)" in job.stderr()
    assert log.index("starting at step 3") > log.index("hanging until stopped")


def test_dual_queue_on_local_jobs_cancels_the_one_held_back(fake_stage):
    job = stage_job(fake_stage, claim_token="t2")
    # held back like a PENDING job: its setup never ends (exec: the cancel signal reaches that process). The local
    # executor cancels with SIGINT, which a shell started in the background (nohup, CI runners) inherits as ignored
    # and cannot un-ignore, so the waiting process restores it itself.
    params = {"timeout_min": 2, "signal_delay_s": 30}
    code = "import signal, time; signal.signal(signal.SIGINT, signal.SIG_DFL); time.sleep(60)"
    wait = f"exec {sys.executable} -c '{code}'"
    held = local_executor(fake_stage / "held" / "%j", setup=[wait], **params).submit(job)
    ready = local_executor(fake_stage / "ready" / "%j", **params).submit(job)
    try:
        winner = keep_first_started([held, ready], poll_s=0.2, timeout_s=30, labels=["held", "ready"])
        assert winner is ready
        wait_until(lambda: held.state == "INTERRUPTED")
        assert not held.paths.stdout.exists()
        assert ready.result() == 0 and state(fake_stage)["starts"] == [0] and state(fake_stage)["step"] == 8
    finally:
        for job in (held, ready):
            if not job.done():
                job.cancel()


def test_a_job_start_unpickles_the_job_without_importing_the_policy(tmp_path):
    """submitit unpickles the job on the node before its USR2 handler is up: the StageJob travels by value, so that
    start imports submitit and so101_commands, not lerobot_policy_hlrp (the hlrp policy: torch, LeRobot)."""
    import cloudpickle

    (tmp_path / "job.pkl").write_bytes(cloudpickle.dumps(stage_job(tmp_path)))
    code = f"""
import pickle, sys
job = pickle.loads(open({str(tmp_path / "job.pkl")!r}, "rb").read())
print(type(job).__name__, sorted(m for m in ("lerobot_policy_hlrp", "torch", "lerobot") if m in sys.modules))
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split() == ["StageJob", "[]"]


def test_a_recording_is_one_slurm_array_of_plain_tasks(tmp_path, fake_slurm):
    """--stage=record: the recording is checked and staged here, then one sbatch submits an array whose task i
    records group i of the shards as one plain process, on a node without GPUs if the cluster config says so."""
    cfg = lrz_config(
        tmp_path, "--stage=record", "--cluster.second_partition=null", "--cluster.gpus_per_node=0", "--array_tasks=2"
    )
    record = ["--dataset.repo_id=local/rec", "--dataset.root=data/rec", "--dataset.num_episodes=4"]
    job_args = [*record, "--episodes_per_shard=1"]
    jobs = submit(replace(cfg, args=job_args), workdir=tmp_path)
    assert len(jobs) == 2 and len((fake_slurm / "sbatch_calls").read_text().splitlines()) == 1
    (script,) = (path.read_text().splitlines() for path in tmp_path.glob("logs/*/*_submission.sh"))
    for line in (
        "#SBATCH --array=0-1%2",
        "#SBATCH --job-name=so101-record",
        "#SBATCH --requeue",
        "module load slurm_setup",
    ):
        assert line in script, (line, script)
    assert not [line for line in script if "--gres" in line]  # gpus_per_node=0: a node without GPUs will do
    tasks = [job.submission().function for job in jobs]
    assert all(isinstance(task, RecordTaskJob) for task in tasks)
    for i, task in enumerate(tasks):
        assert task.output_dir == tmp_path / "data" / "rec" and task.workdir == tmp_path
        assert task.args[:2] == ["--array_tasks=2", f"--array_task={i}"] and task.args[3:] == job_args
        # the same command after a requeue: the recorder keeps its finished shards by itself
        assert task.command() == task.checkpoint().function.command()
        assert task.command() == [sys.executable, "-m", "lerobot_env_so101_twin.commands.record_array", *task.args]
    assert tasks[0].args[2] == tasks[1].args[2]  # one merge claim for the whole array
    assert (tmp_path / "data" / ".rec.partial" / "manifest.json").is_file()  # staged before submitting
