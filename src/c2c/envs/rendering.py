"""MuJoCo offscreen rendering on the CPU, shared by the Meta-World and LIBERO environments.

Example::

    renderer = renderer_for(model, 96)       # the process's one live renderer, for this model at 96 x 96
    image = renderer.render(data, camera_id, mujoco.MjvOption())   # (96, 96, 3) uint8, top row first
    close_renderer()

The GL backend is chosen when mujoco is imported: importing this module first picks OSMesa (CPU) unless
``MUJOCO_GL`` names another backend (:func:`select_gl_backend`).

Cost (OSMesa, two 96x96 cameras on 2 cores): the stock settings (4x multisampling, 4096 shadow map, reflections)
cost about 250 ms a frame. :class:`OffscreenRenderer` switches the three off, and :func:`simplify_visual_meshes`
(with :func:`mesh_cell_size`) cuts the drawn mesh triangles to what the image size can show.
A process has ONE live renderer (a second one made while the first is open was seen to render garbage), so
:func:`renderer_for` closes the old renderer when asked for another model or size.

:class:`SimplifiedDrawing` draws a copy of a model with simplified meshes (LIBERO's ``fast_drawing``); it is
reused as long as the model keeps its structure (:func:`model_structure`).
"""

from __future__ import annotations

import os


def select_gl_backend() -> None:
    """Pick OSMesa (CPU rendering; EGL needs a GPU) unless ``MUJOCO_GL`` is set: call before mujoco is imported."""
    if "MUJOCO_GL" not in os.environ:
        os.environ["MUJOCO_GL"] = "osmesa"
    if os.environ["MUJOCO_GL"] == "osmesa":
        os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")


select_gl_backend()

import copy  # noqa: E402
import hashlib  # noqa: E402
from typing import Any  # noqa: E402

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from c2c.errors import C2CError, ConfigError  # noqa: E402


# ---------------------------------------------------------------------------------------------------------------
# The process's one renderer.


class OffscreenRenderer:
    """``mujoco.Renderer`` cut to what demos need, with the cheap settings; use :func:`renderer_for` to get one.

    Differences from ``mujoco.Renderer``: shadows and reflections are off in the scene, the font atlas is the
    smallest (no text is drawn), pixels are read into one reused buffer, the 180-degree turn of upside-down
    cameras is folded into the vertical flip every OpenGL read needs, and OSMesa is used whenever MUJOCO_GL says
    so, whatever mujoco picked when it was imported.
    """

    def __init__(self, model: mujoco.MjModel, size: int) -> None:
        _configure_cheap_rendering(model, size)
        self.model, self.size = model, size
        self._gl = _make_gl_context(size)
        self._gl.make_current()
        self._context = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_50)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._context)
        self._scene = mujoco.MjvScene(model, maxgeom=10000)
        self._scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
        self._scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._rect = mujoco.MjrRect(0, 0, size, size)
        self._pixels = np.empty((size, size, 3), np.uint8)  # OpenGL rows: bottom row first

    def render(
        self, data: mujoco.MjData, camera_id: int, option: mujoco.MjvOption, *, rotate_180: bool = False
    ) -> np.ndarray:
        """(size, size, 3) uint8 image of ``data`` from camera ``camera_id``, top row first (a new array)."""
        if self._context is None:
            raise RuntimeError("the renderer is closed")
        self._camera.fixedcamid = camera_id
        mujoco.mjv_updateScene(
            self.model, data, option, None, self._camera, mujoco.mjtCatBit.mjCAT_ALL, self._scene
        )
        self._gl.make_current()
        mujoco.mjr_render(self._rect, self._scene, self._context)
        mujoco.mjr_readPixels(self._pixels, None, self._rect, self._context)
        # Upright: flip the rows. Turned 180 degrees: flip rows and columns, and the row flips cancel.
        return self._pixels[:, ::-1].copy() if rotate_180 else self._pixels[::-1].copy()

    def close(self) -> None:
        if self._context is not None:
            self._gl.make_current()
            self._context.free()
            self._gl.free()
        self._context = None


_live_renderer: OffscreenRenderer | None = None


def _configure_cheap_rendering(model: mujoco.MjModel, size: int) -> None:
    """Settings read when a renderer is made: no multisampling, no shadow map, a framebuffer large enough."""
    model.vis.quality.offsamples = 0
    model.vis.quality.shadowsize = 0
    model.vis.global_.offwidth = max(int(model.vis.global_.offwidth), size)
    model.vis.global_.offheight = max(int(model.vis.global_.offheight), size)


def renderer_for(model: mujoco.MjModel, size: int) -> OffscreenRenderer:
    """The process's live renderer, for ``model`` at ``size`` x ``size``; closes the previous one if it differs."""
    global _live_renderer
    renderer = _live_renderer
    if renderer is not None and renderer.model is model and renderer.size == size:
        return renderer
    close_renderer()
    _live_renderer = OffscreenRenderer(model, size)
    return _live_renderer


def close_renderer(model: mujoco.MjModel | None = None) -> None:
    """Close the process's renderer (a later render makes a new one); with ``model``, only if it draws that model."""
    global _live_renderer
    if _live_renderer is not None and (model is None or _live_renderer.model is model):
        _live_renderer.close()
        _live_renderer = None


def _make_gl_context(size: int) -> Any:
    """An offscreen GL context of the backend named by MUJOCO_GL (OSMesa unless the user chose another).

    OSMesa is asked for by name, so it is used even when mujoco was imported before this module (mujoco then
    picked GLFW, which needs a display).
    """
    try:
        if os.environ.get("MUJOCO_GL", "").lower() == "osmesa":
            from mujoco.osmesa import GLContext

            return GLContext(size, size)
        return mujoco.GLContext(size, size)
    except Exception as error:  # noqa: BLE001 - any backend failure gets the same advice
        raise C2CError(
            f"cannot make an offscreen OpenGL context ({type(error).__name__}: {error}); on a machine without a "
            f"GPU install libosmesa6 and set MUJOCO_GL=osmesa and PYOPENGL_PLATFORM=osmesa"
        ) from error


def mesh_cell_size(image_size: int) -> float:
    """Grid cell (m) for simplifying visual meshes at ``image_size``: 1.2 cm at 96 px, finer for larger images.

    About half the width a 96-px corner2 pixel covers at the robot; mean image change 0.3 grey levels at 96 px.
    """
    return float(np.clip(0.012 * 96 / image_size, 0.002, 0.02))


def simplify_visual_meshes(model: mujoco.MjModel, cell: float, min_faces: int = 1000) -> int:
    """Simplify, in place, the triangles drawn for meshes, by vertex clustering onto a ``cell``-metre grid.

    Software rendering spends most of its time on the Sawyer's 67k mesh triangles, far more than a small image
    can show. In each grid cell one vertex (the one nearest the cell's mean) stands for the others; faces whose
    corners fall into fewer than three cells, and repeated faces, are dropped. Only ``mesh_face`` (and its normal
    and texture indices) changes: vertices stay where they are, because collisions use the convex hull built on
    them (``mesh_graph``), so the simulation is unchanged - the demo generator's replay check confirms it bit for
    bit (moving vertices to the cell means did change contacts on door-open). Returns the number of faces left.
    """
    for mesh in range(model.nmesh):
        face_count = int(model.mesh_facenum[mesh])
        if face_count < min_faces:
            continue
        vert_start, vert_count = model.mesh_vertadr[mesh], model.mesh_vertnum[mesh]
        face_start = model.mesh_faceadr[mesh]
        vertices = model.mesh_vert[vert_start : vert_start + vert_count].astype(np.float64)  # (V, 3)
        cells = np.floor(vertices / cell).astype(np.int64)  # (V, 3)
        _, cluster, counts = np.unique(cells, axis=0, return_inverse=True, return_counts=True)
        cluster = cluster.reshape(-1)  # (V,) cell of each vertex, numbered 0..C-1
        means = np.zeros((len(counts), 3))
        np.add.at(means, cluster, vertices)
        means /= counts[:, None]  # (C, 3)
        distance = ((vertices - means[cluster]) ** 2).sum(axis=1)  # (V,)
        order = np.lexsort((distance, cluster))  # by cell, nearest to the mean first
        representative = order[np.flatnonzero(np.r_[True, np.diff(cluster[order]) != 0])]  # (C,) vertex per cell
        faces = slice(face_start, face_start + face_count)
        corner_cells = cluster[model.mesh_face[faces]]  # (F, 3)
        distinct = (
            (corner_cells[:, 0] != corner_cells[:, 1])
            & (corner_cells[:, 1] != corner_cells[:, 2])
            & (corner_cells[:, 0] != corner_cells[:, 2])
        )
        kept = np.flatnonzero(distinct)
        _, first = np.unique(np.sort(corner_cells[kept], axis=1), axis=0, return_index=True)
        kept = kept[np.sort(first)]  # (K,) in the original face order
        new_faces = representative[corner_cells[kept]]  # (K, 3) vertex indices within the mesh
        normals = model.mesh_facenormal[faces][kept].copy()
        texcoords = model.mesh_facetexcoord[faces][kept].copy()
        count = len(kept)
        model.mesh_face[face_start : face_start + count] = new_faces
        model.mesh_facenormal[face_start : face_start + count] = normals
        model.mesh_facetexcoord[face_start : face_start + count] = texcoords
        model.mesh_facenum[mesh] = count
    return int(model.mesh_facenum.sum())


def is_upside_down(data: mujoco.MjData, camera_id: int) -> bool:
    """True when the camera's image 'up' axis points below the horizon (Meta-World's corner cameras).

    ``cam_xmat`` columns are the camera's right, up and backward axes in world coordinates. A camera is a rotation,
    never a reflection, so an upside-down image is fixed by a 180-degree turn (flip both axes), not by one flip.
    """
    up_axis = data.cam_xmat[camera_id].reshape(3, 3)[:, 1]  # (3,) world direction of the image's up
    return bool(up_axis[2] < 0.0)


# ---------------------------------------------------------------------------------------------------------------
# Simplified drawing of a model copy.


class SimplifiedDrawing:
    """The process's renderer on a copy of ``model`` whose visual meshes are simplified to ``size`` px.

    ``cameras``: image name -> MuJoCo camera name. The copy and its simplification (2-3 s for LIBERO's scenes) are
    made once; :meth:`fits` says whether another compile of the scene (after a hard reset, say) has the same
    structure, so that the copy can keep drawing its states. ``option``: the drawing options (default: all groups
    of MuJoCo's defaults).
    """

    def __init__(self, model: Any, cameras: dict[str, str], size: int, option: Any = None) -> None:
        self.key = model_structure(model)
        self.model = copy.deepcopy(model)
        simplify_visual_meshes(self.model, mesh_cell_size(size))
        self.size = int(size)
        self.names = list(cameras)
        self.camera_ids = []
        for name, camera in cameras.items():
            camera_id = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
            if camera_id < 0:
                raise ConfigError(f"the scene has no camera {camera!r} (image {name!r})")
            self.camera_ids.append(camera_id)
        self.option = option if option is not None else mujoco.MjvOption()

    def fits(self, model: Any) -> bool:
        return model_structure(model) == self.key

    def render(self, data: Any) -> dict[str, np.ndarray]:
        """Image name -> (size, size, 3) uint8 upright image of ``data``."""
        renderer = renderer_for(self.model, self.size)
        return {name: renderer.render(data, camera_id, self.option)
                for name, camera_id in zip(self.names, self.camera_ids, strict=True)}

    def close(self) -> None:
        close_renderer(self.model)


def model_structure(model: Any) -> str:
    """A hash of what drawing depends on besides the state: sizes, geoms, meshes, materials and cameras."""
    digest = hashlib.sha1()
    digest.update(np.array([model.nq, model.nv, model.nbody, model.ngeom, model.nmesh, model.nmat, model.ntex,
                            model.ncam], dtype=np.int64).tobytes())
    for name in ("geom_type", "geom_dataid", "geom_bodyid", "geom_size", "geom_rgba", "geom_matid", "geom_group",
                 "mesh_vertnum", "mesh_facenum", "mat_rgba", "cam_fovy", "cam_bodyid", "cam_pos", "cam_quat"):
        digest.update(np.ascontiguousarray(getattr(model, name)).tobytes())
    return digest.hexdigest()
