"""How the twin's scene looks: the plain look (`none`), a visual shift drawn per episode (`shifted`), and a look no
recording or randomisation draws from (`unseen`), for testing what a policy does in a scene it never saw.

`shifted` redraws, from the episode's seed, the table's colour and texture, the cube's and the arm's colours, the
key light's direction and intensity and the headlight, a few distractor objects of other shapes and colours on the
table, and a small jitter of every camera's pose and field of view. It draws from a random stream of its own, so an
episode seed gives the same cube pose, expert and DART noise in both levels: only the pixels change.

The extra geoms (a textured table cover and the distractors) are visual only (no contacts, no mass), so the
physics is the same in both levels, and they sit in geom group `APPEARANCE_GROUP`, which the renderer shows only
when the level is `shifted`: `none` renders what the twin always rendered. Ground-truth segmentation stays exact:
the cover is `table`, distractors are `background`, the cube keeps class `cube` whatever its colour.

The segmenter's domain randomisation (`so101_twin_data.sim_frames`) uses the same `AppearanceRandomizer`, with
wider `AppearanceRanges`, redrawn per frame.

`unseen` is disjoint from both by construction, factor by factor: every object's colour has its hue in
`unseen_hue` (saturated), a band the other levels fold their colours out of; the table is always textured with a
texture family they never use (rings, tiles, dots); distractors are shapes they never place (ellipsoids, a pyramid,
an octahedron); the key light comes from lower than `light_tilt` allows and is strongly tinted. The camera jitter is
`shifted`'s: what remounting a real camera gives.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import mujoco
import numpy as np

APPEARANCE_LEVELS = ("none", "shifted", "unseen")
APPEARANCE_GROUP = 5  # MjvOption shows groups 0-2 by default; the SO-101 MJCF keeps its collision hulls in 3
APPEARANCE_STREAM = 0xA77  # mixed into the episode seed: appearance draws never move the cube-pose stream
NUM_DISTRACTORS = 4
TABLE_COVER = "appearance_table_cover"
TABLE_TEXTURES = ("checker", "gradient", "speckle")
UNSEEN_TEXTURES = ("rings", "tiles", "dots")  # data textures: no MuJoCo builtin and no segmenter pattern draws these
UNSEEN_DISTRACTOR_SHAPES = ("ellipsoid", "pyramid", "ellipsoid", "octahedron")
_MESHES = {  # unit vertices; MuJoCo takes the convex hull
    "pyramid": [[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0], [0, 0, 1.6]],
    "octahedron": [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]],
}
_MESH_HALF_SIZE = 0.02  # metres
_PARKED_Z = -2.0  # below the floor plane: out of every camera's view
SHIFTED_TINT = (0.8, 1.0)  # per channel of every light's colour in `shifted`: near white


@dataclass
class AppearanceRanges:
    """What `shifted` draws per episode, uniformly over these ranges unless said otherwise."""

    colour_jitter: float = 0.3  # per RGB channel (0-1 scale) around each object's default colour
    random_colour_prob: float = 0.25  # chance an object (table, cube, arm) gets an entirely random colour instead
    table_texture_prob: float = 0.7  # chance the table top is textured (checker, gradient or speckle), tinted
    light_intensity: tuple[float, float] = (0.3, 0.9)  # key light's diffuse, times a slight colour tint
    light_xy: float = 0.8  # metres the key light moves around its default position
    light_tilt: float = 0.6  # its direction's x/y components (z = -1), before normalising
    headlight_ambient: tuple[float, float] = (0.15, 0.5)
    headlight_diffuse: tuple[float, float] = (0.2, 0.6)
    distractors: tuple[int, int] = (1, NUM_DISTRACTORS)  # how many of the distractor objects stand on the table
    distractor_size: tuple[float, float] = (0.012, 0.025)  # metres, half-size
    distractor_clearance: float = 0.07  # metres from the cube's centre and from the arm's base, at least
    camera_pos_std: float = 0.008  # metres, normal per axis
    camera_rot_std_deg: float = 2.0  # normal, about a random axis
    fovy_std_deg: float = 2.0  # normal
    # `unseen` only, and the band every other draw folds its colours out of: hue (0-1) and the saturation from which
    # a colour counts as having that hue (greys have none)
    unseen_hue: tuple[float, float] = (0.70, 0.88)
    unseen_min_saturation: float = 0.3
    unseen_saturation: tuple[float, float] = (0.4, 0.9)  # what `unseen` draws, within the band
    unseen_light_tilt: tuple[float, float] = (0.8, 1.4)  # the larger of the key light's x/y components (z = -1)
    unseen_light_tint: tuple[float, float] = (0.4, 0.7)  # one colour channel of the key light scaled by this

    def validate(self) -> None:
        for name in ("light_intensity", "headlight_ambient", "headlight_diffuse", "distractor_size", "distractors"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"appearance range {name}={(lo, hi)} must satisfy 0 <= low <= high")
        if self.distractors[1] > NUM_DISTRACTORS:
            raise ValueError(
                f"appearance range distractors={tuple(self.distractors)}: the scene has {NUM_DISTRACTORS} distractors"
            )
        for name in ("colour_jitter", "random_colour_prob", "table_texture_prob", "unseen_min_saturation"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"appearance range {name}={getattr(self, name)} must be in [0, 1]")
        for name in ("unseen_hue", "unseen_saturation", "unseen_light_tint"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi <= 1:
                raise ValueError(f"appearance range {name}={(lo, hi)} must satisfy 0 <= low <= high <= 1")
        # `unseen` must stay outside what the other levels draw, or it is not unseen
        if self.unseen_saturation[0] < self.unseen_min_saturation:
            raise ValueError(
                f"appearance range unseen_saturation={tuple(self.unseen_saturation)} must start at or above "
                f"unseen_min_saturation={self.unseen_min_saturation}: paler colours are drawn by the other levels too"
            )
        if self.unseen_light_tilt[0] <= self.light_tilt or self.unseen_light_tilt[0] > self.unseen_light_tilt[1]:
            raise ValueError(
                f"appearance range unseen_light_tilt={tuple(self.unseen_light_tilt)} must satisfy "
                f"light_tilt={self.light_tilt} < low <= high"
            )
        if self.unseen_light_tint[1] >= SHIFTED_TINT[0]:
            raise ValueError(
                f"appearance range unseen_light_tint={tuple(self.unseen_light_tint)} must stay below "
                f"{SHIFTED_TINT[0]}, the least tint the other levels draw"
            )


def check_level(level: str, flag: str = "appearance") -> None:
    if level not in APPEARANCE_LEVELS:
        raise ValueError(f"--{flag}={level!r} is not an appearance level; choose one of {list(APPEARANCE_LEVELS)}")


def check_look_seed(look_seed: int | None, level: str, flag: str = "look_seed") -> None:
    if look_seed is not None and level == "none":
        raise ValueError(
            f"--{flag}={look_seed} fixes a drawn look, and appearance 'none' draws none: give --appearance=shifted or "
            "unseen with it"
        )


def appearance_rng(episode_seed: int) -> np.random.Generator:
    return np.random.default_rng([int(episode_seed), APPEARANCE_STREAM])


def unseen_texture(name: str, size: int = 64) -> np.ndarray:
    """(size, size) uint8 grey patterns of the families only `unseen` uses; the material's colour tints them."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    if name == "rings":  # concentric rings around the tile's centre
        on = (np.hypot(xx - size / 2, yy - size / 2) // 4) % 2 == 0
    elif name == "tiles":  # square tiles with dark grout lines
        on = (xx % 16 >= 2) & (yy % 16 >= 2)
    elif name == "dots":  # a grid of discs
        on = np.hypot(xx % 16 - 8, yy % 16 - 8) > 4
    else:
        raise ValueError(f"unknown unseen texture {name!r}; the unseen textures are {list(UNSEEN_TEXTURES)}")
    return np.where(on, 230, 90).astype(np.uint8)


def _add_appearance_assets(spec: mujoco.MjSpec) -> None:
    """The assets the appearance levels draw with: the cover's textures (built-in patterns and the unseen level's
    own), the unseen distractors' meshes, and the table cover's material."""
    builtins = {
        "checker": mujoco.mjtBuiltin.mjBUILTIN_CHECKER,
        "gradient": mujoco.mjtBuiltin.mjBUILTIN_GRADIENT,
        "speckle": mujoco.mjtBuiltin.mjBUILTIN_FLAT,
    }
    for name, builtin in builtins.items():
        texture = spec.add_texture()
        texture.name = f"appearance_{name}"
        texture.type = mujoco.mjtTexture.mjTEXTURE_2D
        texture.builtin = builtin
        texture.width = texture.height = 64
        texture.rgb1 = [0.9, 0.9, 0.9]
        texture.rgb2 = [0.35, 0.35, 0.35]
        if name == "speckle":
            texture.mark = mujoco.mjtMark.mjMARK_RANDOM
            texture.random = 0.3
            texture.markrgb = [0.2, 0.2, 0.2]
    for name in UNSEEN_TEXTURES:
        texture = spec.add_texture()
        texture.name = f"appearance_{name}"
        texture.type = mujoco.mjtTexture.mjTEXTURE_2D
        texture.width = texture.height = 64
        texture.nchannel = 3
        texture.data = np.repeat(unseen_texture(name)[..., None], 3, axis=-1).tobytes()
    for name, vertices in _MESHES.items():
        mesh = spec.add_mesh()
        mesh.name = f"appearance_{name}"
        mesh.uservert = np.asarray(vertices, dtype=np.float64).ravel().tolist()
        mesh.scale = [_MESH_HALF_SIZE] * 3
    material = spec.add_material()
    material.name = TABLE_COVER
    material.texrepeat = [6.0, 6.0]
    material.textures[int(mujoco.mjtTextureRole.mjTEXROLE_RGB)] = "appearance_checker"


def add_appearance_geoms(spec: mujoco.MjSpec, table_top_z: float, table_size: tuple[float, float]) -> None:
    """The textured table cover and the distractors of `shifted` and `unseen`, hidden in `APPEARANCE_GROUP` and
    parked below the floor until a level places them."""
    _add_appearance_assets(spec)

    world = spec.worldbody
    cover = world.add_geom()
    cover.name = TABLE_COVER
    cover.type = mujoco.mjtGeom.mjGEOM_BOX
    cover.size = [table_size[0], table_size[1], 0.0005]
    cover.pos = [0.2, 0.0, table_top_z - 0.0003]  # 0.2 mm above the table top: the cube's contact is untouched
    cover.material = TABLE_COVER
    shapes = (
        mujoco.mjtGeom.mjGEOM_CYLINDER,
        mujoco.mjtGeom.mjGEOM_SPHERE,
        mujoco.mjtGeom.mjGEOM_BOX,
        mujoco.mjtGeom.mjGEOM_CAPSULE,
    )
    extra = []
    for i in range(NUM_DISTRACTORS):
        geom = world.add_geom()
        geom.name = f"appearance_distractor_{i}"
        geom.type = shapes[i % len(shapes)]
        geom.size = [0.02, 0.02, 0.02]
        extra.append(geom)
    for i, shape in enumerate(UNSEEN_DISTRACTOR_SHAPES):
        geom = world.add_geom()
        geom.name = f"appearance_unseen_distractor_{i}"
        if shape == "ellipsoid":
            geom.type = mujoco.mjtGeom.mjGEOM_ELLIPSOID
            geom.size = [0.02, 0.02, 0.02]
        else:
            geom.type = mujoco.mjtGeom.mjGEOM_MESH
            geom.meshname = f"appearance_{shape}"
        extra.append(geom)
    for geom in extra:
        geom.pos = [0.0, 0.0, _PARKED_Z]
        geom.rgba = [0.5, 0.5, 0.5, 1.0]
    for geom in [cover, *extra]:
        geom.contype = geom.conaffinity = 0
        geom.group = APPEARANCE_GROUP
        geom.mass = 0.0


def in_unseen_band(rgb: np.ndarray, ranges: AppearanceRanges) -> bool:
    """Whether a colour has the hue `unseen` keeps to itself (saturated enough to have a hue at all)."""
    hue, saturation, _ = colorsys.rgb_to_hsv(*np.clip(rgb[:3], 0.0, 1.0))
    lo, hi = ranges.unseen_hue
    return saturation >= ranges.unseen_min_saturation and lo <= hue < hi


def fold_out_of_unseen(rgb: np.ndarray, ranges: AppearanceRanges) -> np.ndarray:
    """A colour of `shifted` (or of the segmenter's randomisation) with its hue mirrored out of the unseen band
    at the nearer edge; deterministic, so the level's random stream is the same as before the band existed."""
    if not in_unseen_band(rgb, ranges):
        return rgb
    hue, saturation, value = colorsys.rgb_to_hsv(*np.clip(rgb[:3], 0.0, 1.0))
    lo, hi = ranges.unseen_hue
    hue = lo - (hue - lo) - 1e-3 if hue - lo < hi - hue else hi + (hi - hue)
    return np.array(colorsys.hsv_to_rgb(hue % 1.0, saturation, value))


class AppearanceRandomizer:
    """Redraws the appearance of a compiled twin model in place, as `level` draws it; `restore()` brings back the
    plain look."""

    _FIELDS = (
        "geom_rgba", "geom_pos", "geom_size", "mat_rgba", "mat_texid", "mat_specular", "mat_shininess",
        "light_diffuse", "light_ambient", "light_pos", "light_dir", "cam_pos", "cam_quat", "cam_fovy", "geom_rbound",
    )  # fmt: skip

    def __init__(self, model: mujoco.MjModel, ranges: AppearanceRanges | None = None, level: str = "shifted") -> None:
        if level not in APPEARANCE_LEVELS[1:]:
            raise ValueError(f"AppearanceRandomizer draws {list(APPEARANCE_LEVELS[1:])}, not {level!r}")
        self.model = model
        self.level = level
        self.ranges = ranges or AppearanceRanges()
        self.ranges.validate()
        self._defaults = {name: getattr(model, name).copy() for name in self._FIELDS}
        self._headlight = (model.vis.headlight.ambient.copy(), model.vis.headlight.diffuse.copy())
        self._cover = model.geom(TABLE_COVER).id
        self._cover_mat = model.material(TABLE_COVER).id
        self._textures = [model.texture(f"appearance_{name}").id for name in TABLE_TEXTURES]
        self._distractors = [model.geom(f"appearance_distractor_{i}").id for i in range(NUM_DISTRACTORS)]
        self._unseen_textures = [model.texture(f"appearance_{name}").id for name in UNSEEN_TEXTURES]
        self._unseen_distractors = [
            model.geom(f"appearance_unseen_distractor_{i}").id for i in range(len(UNSEEN_DISTRACTOR_SHAPES))
        ]
        self._table = model.geom("table").id
        self._cube = model.geom("cube").id
        self._floor = model.geom("floor").id
        scenery = {self._cover, self._table, self._cube, self._floor, *self._distractors, *self._unseen_distractors}
        arm = set(range(model.ngeom)) - scenery
        self._arm_geoms = sorted(arm)
        top = model.geom_pos[self._cover][2] + model.geom_size[self._cover][2]
        self._table_top = float(top)
        self._table_half = model.geom_size[self._table][:2].copy()
        self._table_centre = model.geom_pos[self._table][:2].copy()

    def restore(self) -> None:
        for name, value in self._defaults.items():
            getattr(self.model, name)[:] = value
        self.model.vis.headlight.ambient[:], self.model.vis.headlight.diffuse[:] = self._headlight

    def _colour(self, rng: np.random.Generator, default: np.ndarray) -> np.ndarray:
        r = self.ranges
        if rng.random() < r.random_colour_prob:
            return fold_out_of_unseen(rng.uniform(0.0, 1.0, 3), r)
        return fold_out_of_unseen(np.clip(default[:3] + rng.uniform(-r.colour_jitter, r.colour_jitter, 3), 0.0, 1.0), r)

    def _unseen_colour(self, rng: np.random.Generator, value: tuple[float, float]) -> np.ndarray:
        r = self.ranges
        hue = rng.uniform(*r.unseen_hue)
        return np.array(colorsys.hsv_to_rgb(hue, rng.uniform(*r.unseen_saturation), rng.uniform(*value)))

    def apply(self, rng: np.random.Generator, cube_xy: np.ndarray | None = None) -> None:
        """Draw a new look; distractors keep `distractor_clearance` from `cube_xy` (and from the arm's base)."""
        if self.level == "unseen":
            self._apply_unseen(rng, cube_xy)
            return
        m, r, d = self.model, self.ranges, self._defaults
        self.restore()
        # The arm's links share one draw, as a printed arm is one plastic, with a small per-part shift.
        arm_rgb = self._colour(rng, d["mat_rgba"].mean(axis=0) if m.nmat else np.full(4, 0.5))
        for i in range(m.nmat):
            if i == self._cover_mat:
                continue
            m.mat_rgba[i, :3] = fold_out_of_unseen(np.clip(arm_rgb + rng.normal(0.0, 0.05, 3), 0.0, 1.0), r)
            m.mat_specular[i] = rng.uniform(0.0, 0.6)
            m.mat_shininess[i] = rng.uniform(0.0, 1.0)
        for i in self._arm_geoms:
            if m.geom_matid[i] >= 0:  # a geom rgba other than the default would override its material's
                m.geom_rgba[i, :3] = m.mat_rgba[m.geom_matid[i], :3]
            else:
                m.geom_rgba[i, :3] = self._colour(rng, d["geom_rgba"][i])
        for i in (self._cube, self._floor):
            m.geom_rgba[i, :3] = self._colour(rng, d["geom_rgba"][i])
        table_rgb = self._colour(rng, d["geom_rgba"][self._table])
        m.geom_rgba[self._table, :3] = table_rgb
        # The cover carries the table's colour; with a texture, the texture tinted by it
        textured = rng.random() < r.table_texture_prob
        m.mat_texid[self._cover_mat, int(mujoco.mjtTextureRole.mjTEXROLE_RGB)] = (
            self._textures[rng.integers(len(self._textures))] if textured else -1
        )
        m.mat_rgba[self._cover_mat] = [*table_rgb, 1.0]
        for i in range(m.nlight):
            tint = rng.uniform(*SHIFTED_TINT, 3)
            m.light_diffuse[i] = rng.uniform(*r.light_intensity) * tint
            m.light_ambient[i] = rng.uniform(0.0, 0.2) * tint
            m.light_pos[i, :2] = d["light_pos"][i, :2] + rng.uniform(-r.light_xy, r.light_xy, 2)
            direction = np.array([*rng.uniform(-r.light_tilt, r.light_tilt, 2), -1.0])
            m.light_dir[i] = direction / np.linalg.norm(direction)
        self._headlight_and_cameras(rng)
        self._place_distractors(rng, cube_xy)

    def _headlight_and_cameras(self, rng: np.random.Generator) -> None:
        m, r, d = self.model, self.ranges, self._defaults
        m.vis.headlight.ambient[:] = rng.uniform(*r.headlight_ambient)
        m.vis.headlight.diffuse[:] = rng.uniform(*r.headlight_diffuse)
        for i in range(m.ncam):
            m.cam_pos[i] = d["cam_pos"][i] + rng.normal(0.0, r.camera_pos_std, 3)
            m.cam_quat[i] = _quat_mul(d["cam_quat"][i], _small_rotation(rng, np.deg2rad(r.camera_rot_std_deg)))
            m.cam_fovy[i] = d["cam_fovy"][i] + rng.normal(0.0, r.fovy_std_deg)

    def _apply_unseen(self, rng: np.random.Generator, cube_xy: np.ndarray | None) -> None:
        """Every factor from outside what `shifted` and the segmenter's randomisation draw (see the module's doc)."""
        m, r, d = self.model, self.ranges, self._defaults
        self.restore()
        arm_rgb = self._unseen_colour(rng, (0.45, 0.9))
        for i in range(m.nmat):
            if i == self._cover_mat:
                continue
            shade = rng.uniform(0.9, 1.0)  # one plastic, a slightly different shade per part, hue unchanged
            m.mat_rgba[i, :3] = arm_rgb * shade
            m.mat_specular[i] = rng.uniform(0.0, 0.6)
            m.mat_shininess[i] = rng.uniform(0.0, 1.0)
        for i in self._arm_geoms:
            m.geom_rgba[i, :3] = m.mat_rgba[m.geom_matid[i], :3] if m.geom_matid[i] >= 0 else arm_rgb
        # the cube bright, the table and floor darker: the same hue band, told apart by brightness and texture
        m.geom_rgba[self._cube, :3] = self._unseen_colour(rng, (0.75, 1.0))
        m.geom_rgba[self._floor, :3] = self._unseen_colour(rng, (0.2, 0.5))
        table_rgb = self._unseen_colour(rng, (0.3, 0.6))
        m.geom_rgba[self._table, :3] = table_rgb
        texture = self._unseen_textures[rng.integers(len(self._unseen_textures))]
        m.mat_texid[self._cover_mat, int(mujoco.mjtTextureRole.mjTEXROLE_RGB)] = texture
        m.mat_rgba[self._cover_mat] = [*table_rgb, 1.0]
        for i in range(m.nlight):
            tint = rng.uniform(0.9, 1.0, 3)
            tint[rng.integers(3)] = rng.uniform(*r.unseen_light_tint)
            m.light_diffuse[i] = rng.uniform(*r.light_intensity) * tint
            m.light_ambient[i] = rng.uniform(0.0, 0.2) * tint
            m.light_pos[i, :2] = d["light_pos"][i, :2] + rng.uniform(-r.light_xy, r.light_xy, 2)
            low = rng.uniform(*r.unseen_light_tilt) * rng.choice([-1.0, 1.0])
            other = rng.uniform(-r.unseen_light_tilt[1], r.unseen_light_tilt[1])
            direction = np.array([low, other, -1.0] if rng.random() < 0.5 else [other, low, -1.0])
            m.light_dir[i] = direction / np.linalg.norm(direction)
        self._headlight_and_cameras(rng)
        self._place_distractors(rng, cube_xy, self._unseen_distractors)
        for i in self._unseen_distractors:
            if m.geom_pos[i][2] > _PARKED_Z:
                m.geom_rgba[i, :3] = self._unseen_colour(rng, (0.3, 1.0))

    def _place_distractors(
        self, rng: np.random.Generator, cube_xy: np.ndarray | None, geoms: list[int] | None = None
    ) -> None:
        m, r = self.model, self.ranges
        geoms = self._distractors if geoms is None else geoms
        count = int(rng.integers(r.distractors[0], r.distractors[1] + 1))
        keep_away = [np.zeros(2)] + ([np.asarray(cube_xy, dtype=np.float64)[:2]] if cube_xy is not None else [])
        for k, i in enumerate(geoms):
            if k >= count:
                continue  # stays parked below the floor
            half = rng.uniform(*r.distractor_size)
            for _ in range(100):  # rejection sampling; the table is large next to the clearance
                xy = rng.uniform(
                    self._table_centre - 0.8 * self._table_half, self._table_centre + 0.8 * self._table_half
                )
                if all(np.linalg.norm(xy - p) >= r.distractor_clearance + half for p in keep_away):
                    break
            keep_away.append(xy)
            kind = m.geom_type[i]
            if kind == mujoco.mjtGeom.mjGEOM_CYLINDER or kind == mujoco.mjtGeom.mjGEOM_CAPSULE:
                m.geom_size[i] = [half, half * rng.uniform(0.8, 2.0), 0.0]
                height = m.geom_size[i][1] + (half if kind == mujoco.mjtGeom.mjGEOM_CAPSULE else 0.0)
            elif kind == mujoco.mjtGeom.mjGEOM_SPHERE:
                m.geom_size[i] = [half, 0.0, 0.0]
                height = half
            elif kind == mujoco.mjtGeom.mjGEOM_MESH:  # a fixed size: MuJoCo cannot rescale a compiled mesh
                half = _MESH_HALF_SIZE
                height = 0.0 if m.geom_dataid[i] == m.mesh("appearance_pyramid").id else half
            else:  # box, or ellipsoid (unseen): three half-axes
                m.geom_size[i] = [half, half * rng.uniform(0.6, 1.5), half * rng.uniform(0.6, 1.5)]
                height = m.geom_size[i][2]
            m.geom_pos[i] = [*xy, self._table_top + height]
            m.geom_rgba[i, :3] = fold_out_of_unseen(rng.uniform(0.0, 1.0, 3), r)
        # MuJoCo culls geoms by their bounding radius; a grown distractor must not vanish near the image edge.
        resizable = [i for i in geoms if m.geom_type[i] != mujoco.mjtGeom.mjGEOM_MESH]
        m.geom_rbound[resizable] = np.linalg.norm(m.geom_size[resizable], axis=1) + 1e-3


def _small_rotation(rng: np.random.Generator, std_rad: float) -> np.ndarray:
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = rng.normal(0.0, std_rad)
    return np.concatenate([[np.cos(angle / 2)], np.sin(angle / 2) * axis])


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.zeros(4)
    mujoco.mju_mulQuat(out, np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    return out
