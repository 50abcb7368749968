"""benchmarks/gpu_check.py: the figures it reads from each command's output, its stages going on past a failure and
within the budget, and (slow) the whole check on the CPU with tiny models, as a lent GPU machine runs it.

The slow run covers the recording, one policy's stock lerobot-train and lerobot-eval and one benchmark; the other
policies' tiny train flags are lerobot-train's, as tests/test_policy_contract.py runs them, and each benchmark's
output format is read here from a sample of its own output.
"""

import json
import os
import sys
from pathlib import Path

import pytest
from clitools import load_script, run_cli

REPO = Path(__file__).resolve().parents[1]
gpu_check = load_script("benchmarks/gpu_check.py", "gpu_check")

TRAIN_LOG = (
    "Training:  25%|##5       | 1/4 [00:01<00:05,  1.80s/step]INFO 2026-11-26 10:15:34 ot_train.py:641 step:1 "
    "smpl:4 ep:0 epch:0.07 loss:0.160 grdn:0.445 lr:3.0e-04 updt_s:0.680 data_s:1.124 smp/s:2 mse:0.160\n"
)
SEGVLA_OUT = """device=cuda torch=2.11.0 threads=16 repeats=10 batch=8
segvla == smolvla actions at init (zero cue projections): True
policy                  params  select_action ms  train step ms
smolvla            450,046,496             209.7          186.9
segvla             451,112,000             249.4          207.7
segvla, cues off   451,112,000             220.0          182.7
segvla vs smolvla: select_action +18.9%, train step +11.1% (budget < 5%)
segvla vs segvla, cues off: select_action +13.4%, train step +13.7% (budget < 5%)
cue path alone, 2 cameras: 1.79 ms = 0.854% of smolvla's select_action
"""
HLRP_OUT = """device=cuda torch=2.11.0 threads=16 repeats=5
stage 2 (batch 32): step 323.9 ms, of which online LAQ labelling 45.8 ms = 14.1% (target < 15%), 98.80 samples/s
stage 3 policy                 params  select_action ms
hlrp (regression head)    300,000,000              80.1
hlrp (flow head)          300,100,000             120.5
smolvla                   450,046,496             209.7
"""
DRQ_OUT = """
### DrQ-v2 updates/s (NVIDIA H200)
| config | batch | image | frame stack | encoder channels | ms/update | updates/s |
|---|---|---|---|---|---|---|
| configs/rl_reach.yaml | 256 | 84 | 3 | 32 | 11.3 | 88.5 |
| configs/rl_lift_gpu.yaml | 512 | 84 | 3 | 32 | 15.1 | 66.2 |
"""


RTC_OUT = """
size          policy   engine  chunk ms loop steps  on time  actions  outcome
smolvlm2-500m smolvla  sync        4875
smolvlm2-500m segvla   rtc         5120       1492      82%     1491  ran
"""
ASYNC_OUT = """
| size | chunk | round trip ms (median / p95) | server ms (median / p95) | transport ms (median / p95) |
|---|---:|---:|---:|---:|
| twin | 20 | 260 / 555 | 250 / 539 | 11 / 18 |
"""


def test_train_lines_give_update_and_data_time():
    m = gpu_check.STEP_LINE.search(TRAIN_LOG)
    assert m and m.groups() == ("1", "0.680", "1.124")
    steps = [(0.9, 0.9)] + [(0.010, 0.002)] * 8 + [(0.010, 0.182)]  # a warm-up, then a wait for the workers
    figures = dict(gpu_check.train_figures(steps))
    assert figures["update ms/step, mean (median)"] == "10.0 (10.0)"
    assert figures["data ms/step, mean (median)"] == "22.0 (2.0)"  # the mean counts the wait, as LeRobot's log does
    assert figures["steps/s"] == f"{1 / 0.032:.1f}" and figures["data <= update"] == "no (2.2x)"
    assert figures["steps timed"] == "9 of 10"
    assert dict(gpu_check.train_figures([(0.05, 0.01)] * 3))["data <= update"] == "yes"
    assert gpu_check.train_figures([]) == []


def test_benchmark_outputs_give_their_figures():
    segvla = dict(gpu_check.text_figures(SEGVLA_OUT))
    assert segvla["smolvla: select_action ms"] == "209.7" and segvla["segvla: train step ms"] == "207.7"
    assert segvla["segvla, cues off: select_action ms"] == "220.0"
    assert segvla["segvla vs smolvla"] == "select_action +18.9%, train step +11.1%"
    assert segvla["cue path alone"] == "1.79 ms = 0.854%"
    hlrp = dict(gpu_check.text_figures(HLRP_OUT))
    assert hlrp["stage 2 step ms, batch 32"] == "323.9" and hlrp["stage 2 LAQ labelling ms"] == "45.8"
    assert hlrp["hlrp (flow head): select_action ms"] == "120.5" and hlrp["smolvla: select_action ms"] == "209.7"
    rtc = dict(gpu_check.text_figures(RTC_OUT))
    assert rtc == {"smolvlm2-500m smolvla sync: chunk ms": "4875", "smolvlm2-500m segvla rtc: chunk ms": "5120"}
    assert dict(gpu_check.markdown_figures(ASYNC_OUT))["twin: round trip ms (median / p95)"] == "260 / 555"
    drq = gpu_check.markdown_figures(DRQ_OUT)
    assert drq == [
        ("configs/rl_reach.yaml: ms/update", "11.3"),
        ("configs/rl_reach.yaml: updates/s", "88.5"),
        ("configs/rl_lift_gpu.yaml: ms/update", "15.1"),
        ("configs/rl_lift_gpu.yaml: updates/s", "66.2"),
    ]
    record = dict(gpu_check.record_figures('{\n  "frames": 600,\n  "real_time_factor": 1.84\n}'))
    assert record == {"frames": "600", "real_time_factor": "1.84"}


def test_benchmark_runs_follow_the_flags():
    full = gpu_check.benchmark_runs(gpu_check.GPUCheckConfig(device="cuda"))
    assert [stage for stage, _, _ in full] == [
        "segvla_vs_smolvla",
        "imf_speed (train_batch=32)",
        "imf_speed (train_batch=256)",
        "drqv2_update_device",
        "rtc_latency",
        "async_round_trip",
        "hlrp_speed",
    ]
    assert all("--device=cuda" in flags for _, _, flags in full)
    imf = [flags for stage, _, flags in full if stage.startswith("imf_speed")]
    assert not any(f.startswith("--train_compile_mode") for flags in imf for f in flags)  # eager unless asked
    compiled = gpu_check.benchmark_runs(gpu_check.GPUCheckConfig(device="cuda", imf_compile_mode="reduce-overhead"))
    imf = [flags for stage, _, flags in compiled if stage.startswith("imf_speed")]
    assert len(imf) == 2 and all("--train_compile_mode=reduce-overhead" in flags for flags in imf)
    assert gpu_check.GPUCheckConfig().policies == ["segdepth", "segvla", "imf"]  # hlrp on request
    tiny = gpu_check.GPUCheckConfig(device="cpu", tiny=True, benchmarks=["hlrp_speed"])
    flags = ["--device=cpu", "--tiny=true", "--repeats=1"]
    assert gpu_check.benchmark_runs(tiny) == [("hlrp_speed", "hlrp_speed.py", flags)]
    assert tiny.steps <= 4 and tiny.episodes <= 2
    with pytest.raises(ValueError, match="unknown"):
        gpu_check.GPUCheckConfig(policies=["act"])


def test_a_failing_stage_is_reported_and_the_next_runs(tmp_path, capsys):
    runner = gpu_check.Runner(gpu_check.GPUCheckConfig(device="cpu", output_dir=tmp_path, budget_s=60))
    status, _ = runner.run("broken", [sys.executable, "-c", "print('oops'); raise SystemExit(3)"])
    assert status == "failed (exit 3)"
    table = "print('| a | x ms |'); print('|---|---|'); print('| r | 2.5 |')"
    status, output = runner.run("fine", [sys.executable, "-c", table])
    runner.add("fine", gpu_check.markdown_figures(output), status)
    assert [(r.stage, r.figure, r.status) for r in runner.rows] == [
        ("broken", "wall s", "failed (exit 3)"),
        ("fine", "wall s", "ok"),
        ("fine", "r: x ms", "ok"),
    ]
    assert runner.rows[-1].value == "2.5"
    assert "oops" in (tmp_path / "logs" / "broken.log").read_text() and "oops" in capsys.readouterr().out
    # past the budget: a running stage is stopped, the next ones are skipped, and both say so
    runner.deadline = gpu_check.time.monotonic() + 6
    status, _ = runner.run("slow", [sys.executable, "-c", "import time; time.sleep(60)"])
    assert status == "timeout (budget)"
    assert runner.run("after", [sys.executable, "-c", "pass"])[0] == "skipped (budget)"


def test_an_existing_recording_is_reused(tmp_path):
    (tmp_path / "data" / "meta").mkdir(parents=True)
    (tmp_path / "data" / "meta" / "info.json").write_text(json.dumps({"total_episodes": 7}))
    runner = gpu_check.Runner(gpu_check.GPUCheckConfig(device="cpu", output_dir=tmp_path))
    assert gpu_check.record(runner) == tmp_path / "data"
    assert [(r.stage, r.figure, r.value) for r in runner.rows] == [("record", "episodes (reused)", "7")]


@pytest.mark.slow
def test_the_whole_check_runs_on_the_cpu_with_tiny_models(tmp_path):
    out = tmp_path / "check"
    proc = run_cli(
        [
            sys.executable,
            str(REPO / "benchmarks" / "gpu_check.py"),
            "--device=cpu",
            "--tiny=true",
            "--num_workers=0",
            "--policies=[segdepth]",
            "--benchmarks=[rtc_latency,hlrp_speed]",
            f"--output_dir={out}",
        ],
        cwd=REPO,
        timeout=600,
    )
    log = proc.stdout
    # one line per training step with LeRobot's own update and data time, then the stages in order
    steps = [line for line in log.splitlines() if line.startswith("[train segdepth] step ")]
    assert len(steps) == 4 and all("updt_s" in s and "data_s" in s for s in steps), log[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    rows = {(r["stage"], r["figure"]): r for r in summary["rows"]}
    assert all(r["status"] == "ok" for r in summary["rows"]), (out / "summary.md").read_text()
    assert rows[("record", "frames")]["value"] == "60"
    assert float(rows[("train segdepth", "update ms/step, mean (median)")]["value"].split()[0]) > 0
    assert rows[("eval segdepth", "n_episodes")]["value"] == "1"
    assert ("hlrp_speed", "stage 2 step ms, batch 2") in rows
    assert float(rows[("rtc_latency", "tiny segvla rtc: chunk ms")]["value"]) > 0
    assert "cpu" in summary["header"] and "--tiny" in summary["header"]
    assert log.rstrip().endswith((out / "summary.md").read_text().rstrip().splitlines()[-1])


def test_gpu_site_install_puts_the_packed_site_and_the_sources_on_the_path(tmp_path):
    """scripts/gpu_site.sh install, as the lent machine runs it, on a stand-in archive (the real one is ~40 MB)."""
    import subprocess
    import tarfile

    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    (repo / "scripts" / "gpu_site.sh").write_text((REPO / "scripts" / "gpu_site.sh").read_text())
    stage = tmp_path / "stage"
    (stage / "site" / "packed_marker").mkdir(parents=True)
    (stage / "site" / "packed_marker" / "__init__.py").write_text("WHERE = 'site'\n")
    (stage / "debs").mkdir()
    (stage / "workspace.txt").write_text("so101_core\n")
    (repo / "build").mkdir()
    with tarfile.open(repo / "build" / "gpu_site.tar.xz", "w:xz") as tar:
        for name in ("site", "debs", "workspace.txt"):
            tar.add(stage / name, arcname=name)
    dest = tmp_path / "gpu_site"
    script = (
        f"bash scripts/gpu_site.sh install && . {dest}/env.sh && "
        "python -c 'import packed_marker, os; print(packed_marker.WHERE, os.environ[\"MUJOCO_GL\"])'"
    )
    env = {**os.environ, "GPU_SITE": str(dest), "PYTHON": sys.executable}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    proc = subprocess.run(["bash", "-c", script], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[gpu_site] ready: lerobot" in proc.stdout and proc.stdout.rstrip().endswith("site egl")
    assert f"{repo}/so101_core/src:{dest}/site" in (dest / "env.sh").read_text()
    # without the archive it says how to make one
    (repo / "build" / "gpu_site.tar.xz").unlink()
    proc = subprocess.run(["bash", "scripts/gpu_site.sh", "install"], cwd=repo, env=env, capture_output=True, text=True)
    assert proc.returncode == 1 and "bash scripts/gpu_site.sh pack" in proc.stderr
