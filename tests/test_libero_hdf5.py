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


# --- OpenVLA's regenerated files and no-op actions ---------------------------------------------------------------


def _write_regenerated_file(path, demos=(0, 2), length=5, size=8):
    """A file as OpenVLA's regeneration writes it: no attributes, demo numbers with gaps (failed replays left out),
    ee_states beside ee_pos/ee_ori, joint_states, states and robot_states."""
    rng = np.random.default_rng(1)
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        for i in demos:
            demo = data.create_group(f"demo_{i}")
            demo.create_dataset("actions", data=rng.uniform(-1, 1, (length, 7)))
            demo.create_dataset("states", data=rng.normal(size=(length, 9)))
            demo.create_dataset("robot_states", data=rng.normal(size=(length, 9)))
            obs = demo.create_group("obs")
            pose = rng.normal(size=(length, 6))
            obs.create_dataset("ee_states", data=pose)
            obs.create_dataset("ee_pos", data=pose[:, :3])
            obs.create_dataset("ee_ori", data=pose[:, 3:])
            obs.create_dataset("gripper_states", data=rng.normal(size=(length, 2)))
            obs.create_dataset("joint_states", data=rng.normal(size=(length, 7)))
            for key in ("agentview_rgb", "eye_in_hand_rgb"):
                obs.create_dataset(key, data=rng.integers(0, 255, (length, size, size, 3), dtype=np.uint8))
    return path


def test_instruction_from_file_name_as_openvlas_builders():
    from c2c.data.libero_hdf5 import instruction_from_file_name

    assert instruction_from_file_name("d/pick_up_the_ketchup_and_place_it_in_the_basket_demo.hdf5") == \
        "pick up the ketchup and place it in the basket"
    assert instruction_from_file_name("KITCHEN_SCENE3_turn_on_the_stove_and_put_the_moka_pot_on_it_demo.hdf5") == \
        "turn on the stove and put the moka pot on it"
    assert instruction_from_file_name(
        "LIVING_ROOM_SCENE2_put_both_the_alphabet_soup_and_the_tomato_sauce_in_the_basket_demo.hdf5") == \
        "put both the alphabet soup and the tomato sauce in the basket"
    for name in ("pick_up_the_ketchup.hdf5", "_demo.hdf5", "KITCHEN_SCENE3_demo.hdf5", "demo.hdf5"):
        assert instruction_from_file_name(name) is None, name


def test_reads_openvla_regenerated_files(tmp_path):
    from c2c.data.libero_hdf5 import LAYOUT_LIBERO, LAYOUT_REGENERATED

    regenerated = _write_regenerated_file(tmp_path / "KITCHEN_SCENE3_turn_on_the_stove_demo.hdf5", demos=(0, 2, 10))
    original = _write_libero_file(tmp_path / "some_other_name_demo.hdf5", lengths=(3,))
    source = LiberoHDF5Dataset([regenerated, original])
    assert source.num_episodes == 4 and source.tasks == ["turn on the stove", "put the bowl on the plate"]
    assert source.layouts == {regenerated.name: LAYOUT_REGENERATED, original.name: LAYOUT_LIBERO}
    assert [source.episode(i).metadata["demo"] for i in range(3)] == ["demo_0", "demo_2", "demo_10"]
    ep = source.episode(1)
    assert ep.task == "turn on the stove" and ep.metadata["layout"] == LAYOUT_REGENERATED
    with h5py.File(regenerated) as f:
        np.testing.assert_array_equal(ep.images["image2"], f["data/demo_2/obs/eye_in_hand_rgb"][()][:, ::-1, ::-1])
        np.testing.assert_allclose(ep.states[:, :6], f["data/demo_2/obs/ee_states"][()], rtol=1e-6)
    # problem_info wins over the file name.
    assert source.episode(3).task == "put the bowl on the plate" and source.episode(3).metadata["layout"] == "libero"


def test_file_without_problem_info_or_task_name_is_named(tmp_path):
    path = _write_regenerated_file(tmp_path / "episodes.hdf5")
    with pytest.raises(DatasetError) as error:
        LiberoHDF5Dataset([path])
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{path}: no attribute 'data.problem_info'")
    assert "'<task words>_demo.hdf5'" in message and "rename it" in message


def _openvla_noops(actions, threshold=1e-4):
    """OpenVLA's loop, written out: each action against the last one kept."""
    kept, noop = [], []
    for action in actions:
        still = np.linalg.norm(action[:-1]) < threshold
        is_noop = still if not kept else still and action[-1] == kept[-1][-1]
        noop.append(bool(is_noop))
        if not is_noop:
            kept.append(action)
    return np.array(noop)


def test_noop_actions_follow_openvlas_rule():
    from c2c.data.libero_hdf5 import noop_actions

    move = [0.3, 0, 0, 0, 0, 0]
    actions = np.array([[0] * 6 + [-1],          # first, still: no-op
                        move + [-1],             # moves
                        [0] * 6 + [-1],          # still, same gripper: no-op
                        [0] * 6 + [1],           # still but closes the gripper: kept
                        [0] * 6 + [1],           # still, gripper as the last kept: no-op
                        [5e-5] + [0] * 5 + [1],  # under the threshold: no-op
                        [2e-4] + [0] * 5 + [1]])  # over it: kept
    np.testing.assert_array_equal(noop_actions(actions), [True, False, True, False, True, True, False])
    rng = np.random.default_rng(0)
    for _ in range(20):
        random = rng.normal(size=(60, 7)) * (rng.random((60, 1)) < 0.4)  # many all-zero rows
        random[:, -1] = rng.choice([-1.0, 1.0], size=60)
        np.testing.assert_array_equal(noop_actions(random), _openvla_noops(random))
        kept = random[~noop_actions(random)]
        assert not noop_actions(kept).any()  # what is left has none: dropping twice changes nothing


def test_drop_noops_removes_their_frames(tmp_path):
    path = _write_libero_file(tmp_path / "t_demo.hdf5", lengths=(6, 3))
    with h5py.File(path, "a") as f:
        actions = f["data/demo_0/actions"]
        actions[0, :6], actions[3, :6] = 0.0, 0.0  # demo 0: frames 0 and 3 still
        actions[3, 6] = actions[2, 6]              # frame 3 keeps the gripper: no-op; frame 0 is the first: no-op
        f["data/demo_1/actions"][:, :6] = 0.0
        f["data/demo_1/actions"][:, 6] = -1.0
    kept = LiberoHDF5Dataset([path], drop_noops=True).episode(0)
    full = LiberoHDF5Dataset([path]).episode(0)
    rows = [1, 2, 4, 5]
    assert kept.length == 4 and kept.metadata["noops_dropped"] == 2 and "noops_dropped" not in full.metadata
    np.testing.assert_array_equal(kept.actions, full.actions[rows])
    np.testing.assert_array_equal(kept.states, full.states[rows])
    for camera in ("image", "image2"):
        np.testing.assert_array_equal(kept.images[camera], full.images[camera][rows])
    assert LiberoHDF5Dataset([path], drop_noops=True).episode(0, load_images=False).length == 4
    with pytest.raises(DatasetError, match=r"t_demo\.hdf5:data/demo_1: every one of its 3 actions is a no-op"):
        LiberoHDF5Dataset([path], drop_noops=True).episode(1)


def test_drop_noops_changes_nothing_in_regenerated_files(tmp_path):
    path = _write_regenerated_file(tmp_path / "open_the_drawer_demo.hdf5", demos=(1,))
    plain, dropped = LiberoHDF5Dataset([path]).episode(0), LiberoHDF5Dataset([path], drop_noops=True).episode(0)
    assert dropped.metadata["noops_dropped"] == 0
    np.testing.assert_array_equal(plain.actions, dropped.actions)
    np.testing.assert_array_equal(plain.images["image"], dropped.images["image"])


def test_c2c_data_convert_reads_both_hdf5_layouts_into_a_dataset(tmp_path):
    """One command per source: LIBERO's original files and OpenVLA's regenerated ones become our v3 dataset."""
    from c2c.cli import main
    from c2c.data.lerobot import LeRobotDataset

    source = tmp_path / "libero_object"
    source.mkdir()
    _write_libero_file(source / "pick_up_the_soup_demo.hdf5", lengths=(6, 4))
    _write_regenerated_file(source / "KITCHEN_SCENE3_turn_on_the_stove_demo.hdf5", demos=(0, 2))
    out = tmp_path / "dataset"
    assert main(["data", "convert", "--src", str(source), "--out", str(out), "--resize", "16", "--drop-noops"]) == 0
    dataset = LeRobotDataset(out)
    reference = LiberoHDF5Dataset.from_directory(source, drop_noops=True)
    assert dataset.num_episodes == reference.num_episodes == 4
    assert sorted(set(dataset.tasks)) == sorted(set(reference.tasks))
    for index, expected in enumerate(reference):
        episode = dataset.episode(index)
        np.testing.assert_allclose(episode.actions, expected.actions, rtol=1e-6)
        assert episode.images["image"].shape[1:] == (16, 16, 3) and episode.task == expected.task
    info = dataset.extra_info
    assert info["source"]["drop_noops"] and info["action_layout"] == "libero"
    assert sorted(info["source"]["layouts"]) == ["libero", "openvla-regenerated"]
    with pytest.raises(Exception, match="--drop-noops applies to LIBERO HDF5 files"):
        from c2c.cli.data import run_data_convert
        import argparse

        run_data_convert(argparse.Namespace(src=out, out=tmp_path / "x", key_map="auto", resize=None,
                                            image_format=None, action_layout=None, overwrite=False, drop_noops=True))
