"""Control-rate and memory benchmark of the SO-101 digital twin (CPU rendering through EGL).

Run from the repository root:

    .venv/bin/python benchmarks/twin_speed.py                  # 5 repeats of 60 steps per configuration
    .venv/bin/python benchmarks/twin_speed.py --repeats=3 --steps=30

Every configuration runs in its own fresh Python process (this script re-invoked with a hidden `--worker`
flag), one after the other, so that each one's peak RSS is its own and no GL context or mesh cache of an
earlier configuration is warm. A timed step is `apply_action` + `step` (+ `render` when cameras are on); the
actions are the scripted expert's first `--steps` targets for seeds 0..repeats-1, computed before the clock
starts so that the expert's IK planning is not charged to the twin. The arm moves the whole time (rest pose ->
hover above the cube -> descend).

Columns of the table:
    configuration      mesh detail, camera size (height x width, both the front and the wrist camera), outputs
    steps/s (median)   control steps per second, median over the repeats (one repeat = --steps steps)
    min-max            slowest and fastest repeat, steps/s
    ms/step            1000 / median steps/s
    physics ms         median time in apply_action + step per control step (1/fps s of simulated time); in
                       the rendering rows it runs right after a render and so on colder caches: expect it a
                       little above the cameras-off row even though the physics is identical
    render ms          median time in render() per control step (both cameras), "-" with cameras off
    build s            time to construct the twin (compile the scene, create the GL context)
    peak RSS MiB       ru_maxrss of the configuration's own process at the end of its run
    twin RSS MiB       how far building and running the twin raised that peak above the process's
                       peak just after `import lerobot_env_so101_twin.simulation` (which also imports lerobot and torch)

The line under the table compares the physics alone (apply_action + step, no render call) of a twin built
without cameras and of one with a renderer attached, over full scripted-expert episodes, in one process.
"""

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lerobot.configs import parser

from so101_run_infra.cli import prepare_command_line

if TYPE_CHECKING:  # the twin is imported lazily: the parent process only orchestrates and never builds one
    import numpy as np

    from lerobot_env_so101_twin.simulation import TwinSimulation

RESULT_MARKER = "TWIN_SPEED_RESULT "
SMALL, LARGE = (128, 128), (480, 640)  # (height, width)


@dataclass(frozen=True)
class Setup:
    name: str
    size: tuple[int, int] | None  # None: cameras off
    extras: bool = False  # depth + segmentation
    mesh_cell: float | None = 0.004  # None: full-detail CAD meshes

    @property
    def label(self) -> str:
        mesh = "low-poly" if self.mesh_cell else "full-detail"
        if self.size is None:
            return f"{mesh}, cameras off"
        outputs = "RGB+depth+seg" if self.extras else "RGB"
        return f"{mesh}, 2x {self.size[0]}x{self.size[1]} {outputs}"


SETUPS: dict[str, Setup] = {
    s.name: s
    for s in (
        Setup("off", None),
        Setup("small_rgb", SMALL),
        Setup("small_all", SMALL, extras=True),
        Setup("large_rgb", LARGE),
        Setup("large_all", LARGE, extras=True),
        Setup("full_small_rgb", SMALL, mesh_cell=None),
    )
}


@dataclass
class Result:
    label: str
    rates: list[float]
    physics_ms: float
    render_ms: float | None
    build_s: float
    peak_rss_mib: float
    baseline_rss_mib: float
    gl_renderer: str | None = None


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def _expert_actions(twin: "TwinSimulation", seed: int, steps: int) -> "list[np.ndarray]":
    """The scripted expert's first `steps` targets from `seed`'s start state; leaves the twin reset to it.

    The expert reads the twin only when it plans (its first action), then plays a fixed schedule, so its
    actions can be computed ahead and replayed exactly.
    """
    from lerobot_env_so101_twin.expert import ScriptedExpert

    twin.reset(seed)
    expert = ScriptedExpert(twin)
    return [expert.action() for _ in range(steps)]


def run_setup(setup: Setup, repeats: int, steps: int) -> Result:
    """Time one configuration in this process (call it in a fresh process for a clean peak RSS)."""
    from lerobot_env_so101_twin.simulation import TwinConfig, TwinSimulation

    baseline = _peak_rss_mib()
    cameras = {} if setup.size is None else {"front": setup.size, "wrist": setup.size}
    config = TwinConfig(cameras=cameras, depth=setup.extras, segmentation=setup.extras, mesh_cell=setup.mesh_cell)
    start = time.perf_counter()
    twin = TwinSimulation(config, seed=0)
    build_s = time.perf_counter() - start
    rendering = bool(cameras)
    gl_renderer = _gl_renderer() if rendering else None

    # Warm-up: the first frames pay for shader compilation and texture/mesh uploads.
    for action in _expert_actions(twin, 0, 5):
        twin.apply_action(action)
        twin.step()
        if rendering:
            twin.render()

    rates, physics, render = [], [], []
    for repeat in range(repeats):
        actions = _expert_actions(twin, repeat, steps)
        t_physics = t_render = 0.0
        start = time.perf_counter()
        for action in actions:
            t0 = time.perf_counter()
            twin.apply_action(action)
            twin.step()
            t1 = time.perf_counter()
            if rendering:
                twin.render()
                t_render += time.perf_counter() - t1
            t_physics += t1 - t0
        elapsed = time.perf_counter() - start
        rates.append(steps / elapsed)
        physics.append(1000.0 * t_physics / steps)
        render.append(1000.0 * t_render / steps)
    twin.close()
    return Result(
        label=setup.label,
        rates=rates,
        physics_ms=statistics.median(physics),
        render_ms=statistics.median(render) if rendering else None,
        build_s=build_s,
        peak_rss_mib=_peak_rss_mib(),
        baseline_rss_mib=baseline,
        gl_renderer=gl_renderer,
    )


def _gl_renderer() -> str | None:
    """GL_RENDERER of the context the twin just made current (e.g. llvmpipe: Mesa's CPU rasteriser)."""
    try:
        from OpenGL import GL

        return GL.glGetString(GL.GL_RENDERER).decode()
    except Exception:  # only informative; a missing PyOpenGL must not fail the benchmark
        return None


def physics_only(repeats: int) -> dict[str, float]:
    """Median ms per apply_action + step over full expert episodes, with no renderer and with one attached.

    Both twins run in this one process on the same action sequences, interleaved and in alternating order
    (whichever runs second after a switch gets warmer caches), so that the two numbers see the same CPU state;
    the attached renderer is never asked to render. Episodes are cheap, so this takes 4x `repeats` of them.
    """
    from lerobot_env_so101_twin.simulation import TwinConfig, TwinSimulation

    twins = {
        "no renderer": TwinSimulation(TwinConfig(cameras={}), seed=0),
        "renderer attached (2x 128x128, not rendering)": TwinSimulation(
            TwinConfig(cameras={"front": SMALL, "wrist": SMALL}), seed=0
        ),
    }
    episode = 8 * twins["no renderer"].config.fps  # rollout_expert's default length: includes the grasp and lift
    times: dict[str, list[float]] = {name: [] for name in twins}
    for repeat in range(-1, 2 * repeats):  # repeat -1 only warms up
        # same model, same start state: one twin's expert plan serves both
        actions = _expert_actions(twins["no renderer"], max(repeat, 0), episode)
        order = list(twins.items()) if repeat % 2 == 0 else list(twins.items())[::-1]
        for name, twin in order:
            twin.reset(max(repeat, 0))
            start = time.perf_counter()
            for action in actions:
                twin.apply_action(action)
                twin.step()
            if repeat >= 0:
                times[name].append(1000.0 * (time.perf_counter() - start) / episode)
    for twin in twins.values():
        twin.close()
    result = {name: statistics.median(values) for name, values in times.items()}
    result["episode_steps"] = episode
    return result


def _worker(name: str, repeats: int, steps: int) -> None:
    if name == "physics":
        payload: dict = physics_only(repeats)
    else:
        payload = run_setup(SETUPS[name], repeats, steps).__dict__
    print(RESULT_MARKER + json.dumps(payload), flush=True)


def _spawn(name: str, repeats: int, steps: int) -> dict:
    """Run one configuration in a fresh interpreter and return what it reported."""
    cmd = [sys.executable, __file__, f"--worker={name}", f"--repeats={repeats}", f"--steps={steps}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER) :])
    raise RuntimeError(f"worker {name!r} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


def format_table(results: list[Result]) -> str:
    header = (
        "| configuration | steps/s (median) | min-max | ms/step | physics ms | render ms | build s "
        "| peak RSS MiB | twin RSS MiB |"
    )
    lines = [header, "|---" * (header.count("|") - 1) + "|"]
    for r in results:
        median = statistics.median(r.rates)
        render = "-" if r.render_ms is None else f"{r.render_ms:.2f}"
        lines.append(
            f"| {r.label} | {median:.1f} | {min(r.rates):.1f}-{max(r.rates):.1f} | {1000.0 / median:.2f} "
            f"| {r.physics_ms:.2f} | {render} | {r.build_s:.2f} | {r.peak_rss_mib:.0f} "
            f"| {r.peak_rss_mib - r.baseline_rss_mib:.0f} |"
        )
    return "\n".join(lines)


@dataclass
class TwinSpeedConfig:
    # timed repeats per configuration
    repeats: int = 5
    # control steps per repeat
    steps: int = 60
    # internal: run this one configuration and report it as JSON (the benchmark spawns one process per configuration)
    worker: str | None = None

    def __post_init__(self) -> None:
        if self.repeats < 1 or self.steps < 1:
            raise ValueError(f"--repeats and --steps must be at least 1, got {self.repeats} and {self.steps}")


@parser.wrap()
def benchmark(cfg: TwinSpeedConfig) -> None:
    if cfg.worker:
        _worker(cfg.worker, cfg.repeats, cfg.steps)
        return

    wall = time.perf_counter()
    results = []
    for name, setup in SETUPS.items():
        print(f"running {setup.label} ...", file=sys.stderr, flush=True)
        results.append(Result(**_spawn(name, cfg.repeats, cfg.steps)))
    print("running physics-only comparison ...", file=sys.stderr, flush=True)
    physics = _spawn("physics", cfg.repeats, cfg.steps)

    gl = next((r.gl_renderer for r in results if r.gl_renderer), "unknown")
    print(
        f"SO-101 twin control rate: {cfg.repeats} repeats x {cfg.steps} steps per configuration, "
        f"each configuration in its own process; {platform.machine()}, {_cpu_count()} CPU cores, "
        f"Python {platform.python_version()}, GL renderer: {gl}\n"
    )
    print(format_table(results))
    attached = next(key for key in physics if key.startswith("renderer"))
    print(
        f"\nPhysics only (apply_action + step, {physics['episode_steps']:.0f}-step expert episodes incl. grasp and "
        f"lift, median of {2 * cfg.repeats}): {physics['no renderer']:.3f} ms/step with no renderer, "
        f"{physics[attached]:.3f} ms/step with a {attached}"
        f" (ratio {physics[attached] / physics['no renderer']:.2f})."
    )
    print(f"\nTotal benchmark wall time: {time.perf_counter() - wall:.0f} s", file=sys.stderr)


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def main() -> None:
    prepare_command_line()
    benchmark()


if __name__ == "__main__":
    main()
