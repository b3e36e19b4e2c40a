"""The LIBERO HDF5 reader on a robomimic-style file made here."""

import json

import h5py
import numpy as np
import pytest

from c2c.data.libero_hdf5 import LiberoHDF5Dataset
from c2c.errors import DatasetError


def _write_libero_file(path, lengths=(6, 4), instruction="put the bowl on the plate", size=8):
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["problem_info"] = json.dumps({"problem_name": "p", "language_instruction": instruction})
        for i, length in enumerate(lengths):
            demo = data.create_group(f"demo_{i}")
            demo.create_dataset("actions", data=rng.uniform(-1, 1, (length, 7)))
            obs = demo.create_group("obs")
            obs.create_dataset("agentview_rgb", data=rng.integers(0, 255, (length, size, size, 3), dtype=np.uint8))
            obs.create_dataset("eye_in_hand_rgb", data=rng.integers(0, 255, (length, size, size, 3), dtype=np.uint8))
            obs.create_dataset("ee_pos", data=rng.normal(size=(length, 3)))
            obs.create_dataset("ee_ori", data=rng.normal(size=(length, 3)))
            obs.create_dataset("gripper_states", data=rng.normal(size=(length, 2)))
    return path


def test_reads_episodes_in_demo_order_with_upright_images(tmp_path):
    path = _write_libero_file(tmp_path / "task_demo.hdf5", lengths=(6, 4, 5))
    source = LiberoHDF5Dataset([path])
    assert source.num_episodes == 3 and source.tasks == ["put the bowl on the plate"]
    ep = source.episode(1)
    assert ep.actions.shape == (4, 7) and ep.states.shape == (4, 8) and ep.task == "put the bowl on the plate"
    with h5py.File(path) as f:
        raw = f["data/demo_1/obs/agentview_rgb"][()]
        np.testing.assert_array_equal(ep.images["image"], raw[:, ::-1, ::-1])  # rotated 180 degrees
        expected_state = np.concatenate(
            [f["data/demo_1/obs/ee_pos"][()], f["data/demo_1/obs/ee_ori"][()], f["data/demo_1/obs/gripper_states"][()]],
            axis=1,
        )
        np.testing.assert_allclose(ep.states, expected_state, rtol=1e-6)
        np.testing.assert_allclose(ep.actions, f["data/demo_1/actions"][()], rtol=1e-6)
    assert set(ep.images) == {"image", "image2"}
    assert [e.length for e in source] == [6, 4, 5]


def test_demo_order_is_numeric(tmp_path):
    path = _write_libero_file(tmp_path / "t.hdf5", lengths=tuple(range(2, 14)))
    assert [LiberoHDF5Dataset([path]).episode(i).length for i in (0, 10, 11)] == [2, 12, 13]


def test_ee_states_fallback_and_no_flip(tmp_path):
    path = _write_libero_file(tmp_path / "t.hdf5", lengths=(3,))
    with h5py.File(path, "a") as f:
        obs = f["data/demo_0/obs"]
        pose = np.concatenate([obs["ee_pos"][()], obs["ee_ori"][()]], axis=1)
        del obs["ee_pos"], obs["ee_ori"]
        obs.create_dataset("ee_states", data=pose)
        raw = obs["eye_in_hand_rgb"][()]
    ep = LiberoHDF5Dataset([path], flip_images=False).episode(0)
    np.testing.assert_allclose(ep.states[:, :6], pose, rtol=1e-6)
    np.testing.assert_array_equal(ep.images["image2"], raw)


def test_missing_instruction_is_named(tmp_path):
    path = tmp_path / "bad.hdf5"
    with h5py.File(path, "w") as f:
        f.create_group("data").create_group("demo_0")
    with pytest.raises(DatasetError, match=r"bad\.hdf5.*problem_info"):
        LiberoHDF5Dataset([path])


def test_missing_key_and_nan_are_named(tmp_path):
    path = _write_libero_file(tmp_path / "t.hdf5", lengths=(3, 3))
    with h5py.File(path, "a") as f:
        del f["data/demo_0/obs/gripper_states"]
        f["data/demo_1/actions"][1, 2] = np.nan
    source = LiberoHDF5Dataset([path])
    with pytest.raises(DatasetError, match=r"demo_0.*'gripper_states' is missing"):
        source.episode(0)
    with pytest.raises(DatasetError, match=r"demo_1.*'action'.*non-finite.*frame 1, dim 2"):
        source.episode(1)


def test_not_hdf5_is_named(tmp_path):
    path = tmp_path / "notes.hdf5"
    path.write_text("not hdf5")
    with pytest.raises(DatasetError, match="notes.hdf5.*not a readable HDF5"):
        LiberoHDF5Dataset([path])
