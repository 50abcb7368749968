"""Offscreen rendering of the twin's cameras: RGB, metric depth and 6-class segmentation.

One OpenGL context serves every camera. RGB is one pass; depth and segmentation share a second, flat-shaded
pass (MuJoCo's segmentation mode), read back together, so asking for both costs what asking for one does.
"""

from __future__ import annotations

import atexit
import importlib
import os
from dataclasses import dataclass

import mujoco
import numpy as np


def gl_context_class():
    """The OpenGL context class for MUJOCO_GL (default: headless EGL), even if mujoco was imported before it was set."""
    backend = os.environ.get("MUJOCO_GL", "egl").lower()
    if backend not in ("egl", "osmesa", "glfw"):
        raise ValueError(f"MUJOCO_GL={backend!r}: the twin renders with 'egl' (default), 'osmesa' or 'glfw'")
    return importlib.import_module(f"mujoco.{backend}").GLContext


def _upright(image: np.ndarray) -> np.ndarray:
    """OpenGL's rows run bottom-up: the image flipped into a new C-contiguous array, as a real camera delivers it.

    Never a flipped view: its negative row stride would reach LeRobot unchanged, and `torch.from_numpy` (in
    lerobot-rollout's `prepare_observation_for_inference`) refuses negative strides. A copy also keeps the frame
    apart from the renderer's buffers, which the next render overwrites.
    """
    return np.ascontiguousarray(image[::-1])


@dataclass
class CameraFrame:
    """One camera's images, each a C-contiguous array of its own (never a view of the renderer's buffers)."""

    rgb: np.ndarray | None  # (H, W, 3) uint8; None when only the ground truth was asked for
    depth: np.ndarray | None = None  # (H, W) float32 metres along the optical axis
    segmentation: np.ndarray | None = None  # (H, W) uint8 class ids


class MultiCameraRenderer:
    def __init__(
        self,
        model: mujoco.MjModel,
        camera_ids: dict[str, int],
        sizes: dict[str, tuple[int, int]],
        geom_class: np.ndarray,
        background_class: int,
        visible_groups: tuple[int, ...] = (),
    ):
        self._model = model
        self._camera_ids = dict(camera_ids)
        self._sizes = {name: (int(h), int(w)) for name, (h, w) in sizes.items()}
        max_h = max(h for h, _ in self._sizes.values())
        max_w = max(w for _, w in self._sizes.values())
        if max_w > model.vis.global_.offwidth or max_h > model.vis.global_.offheight:
            raise ValueError(
                f"camera size {(max_h, max_w)} exceeds the model's offscreen buffer "
                f"{(model.vis.global_.offheight, model.vis.global_.offwidth)}"
            )
        self._gl = gl_context_class()(max_w, max_h)
        self._gl.make_current()
        self._scene = mujoco.MjvScene(model, maxgeom=1000)
        self._context = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_150)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._context)
        self._option = mujoco.MjvOption()
        for group in visible_groups:  # beyond MuJoCo's default 0-2 (the twin's appearance geoms)
            self._option.geomgroup[group] = 1
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FIXED
        # segmentation lookup: scene objects that are not geoms (or nothing at all) are background
        self._geom_class = np.asarray(geom_class, dtype=np.uint8)
        self._background = np.uint8(background_class)
        extent = model.stat.extent
        self._znear = model.vis.map.znear * extent
        self._zfar = model.vis.map.zfar * extent
        # Free the GL objects at close() or at exit; registered after EGL's own atexit hook, so it runs first.
        atexit.register(self.close)
        self._buffers = {
            name: (np.empty((h, w, 3), np.uint8), np.empty((h, w), np.float32)) for name, (h, w) in self._sizes.items()
        }

    @property
    def sizes(self) -> dict[str, tuple[int, int]]:
        return dict(self._sizes)

    def render(
        self,
        data: mujoco.MjData,
        depth: bool = False,
        segmentation: bool = False,
        ground_truth_cameras: set[str] | None = None,
        rgb: bool = True,
    ) -> dict[str, CameraFrame]:
        """RGB for every camera (unless `rgb` is false: labels alone cost one pass instead of two); depth/segmentation
        for `ground_truth_cameras` (default: all of them)."""
        self._gl.make_current()
        frames = {}
        for name, cam_id in self._camera_ids.items():
            height, width = self._sizes[name]
            rect = mujoco.MjrRect(0, 0, width, height)
            self._camera.fixedcamid = cam_id
            mujoco.mjv_updateScene(
                self._model, data, self._option, None, self._camera, mujoco.mjtCatBit.mjCAT_ALL, self._scene
            )
            rgb_buf, depth_buf = self._buffers[name]
            frame = CameraFrame(rgb=None)
            if rgb:
                mujoco.mjr_render(rect, self._scene, self._context)
                mujoco.mjr_readPixels(rgb_buf, None, rect, self._context)
                frame.rgb = _upright(rgb_buf)
            if (depth or segmentation) and (ground_truth_cameras is None or name in ground_truth_cameras):
                self._scene.flags[mujoco.mjtRndFlag.mjRND_SEGMENT] = True
                self._scene.flags[mujoco.mjtRndFlag.mjRND_IDCOLOR] = True
                try:
                    mujoco.mjr_render(rect, self._scene, self._context)
                    mujoco.mjr_readPixels(rgb_buf, depth_buf, rect, self._context)
                finally:
                    self._scene.flags[mujoco.mjtRndFlag.mjRND_SEGMENT] = False
                    self._scene.flags[mujoco.mjtRndFlag.mjRND_IDCOLOR] = False
                if depth:
                    frame.depth = _upright(self._metric_depth(depth_buf))
                if segmentation:
                    frame.segmentation = _upright(self._segmentation(rgb_buf))
            frames[name] = frame
        return frames

    def _metric_depth(self, buffer: np.ndarray) -> np.ndarray:
        # perspective projection: window depth d in [0, 1] maps to metric z = near*far / (far - d*(far-near))
        near, far = np.float64(self._znear), np.float64(self._zfar)
        z = near * far / (far - buffer.astype(np.float64) * (far - near))
        return z.astype(np.float32)

    def _segmentation(self, idcolor: np.ndarray) -> np.ndarray:
        ids = (
            idcolor[..., 0].astype(np.int32)
            + (idcolor[..., 1].astype(np.int32) << 8)
            + (idcolor[..., 2].astype(np.int32) << 16)
            - 1
        )
        lut = np.full(self._scene.ngeom + 1, self._background, dtype=np.uint8)  # index 0 <- id -1: no object
        for i in range(self._scene.ngeom):
            geom = self._scene.geoms[i]
            if geom.objtype == mujoco.mjtObj.mjOBJ_GEOM and geom.segid >= 0:
                lut[geom.segid + 1] = self._geom_class[geom.objid]
        return lut[np.clip(ids + 1, 0, lut.size - 1)]

    def close(self) -> None:
        if self._gl is None:
            return
        atexit.unregister(self.close)
        self._gl.make_current()
        self._context.free()
        self._gl.free()
        self._gl = None
