"""Input and output faults end in one line naming the path and the fix, before any work, and lose nothing.

A read-only --out is simulated by making the write check fail with EROFS under one directory (permission bits do not
stop root, who runs CI here); where the tests do not run as root, a chmod-ed directory is checked as well. Each
command's expensive function is replaced by one that fails the test if called, so "before any work" is checked
directly. About 15 s on 2 cores (the Meta-World case, which needs the simulator, a few more).
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import make_smooth_episodes

from c2c.cli import main
from c2c.data.lerobot import LeRobotDataset
from c2c.errors import DatasetError, OutputError
from c2c.utils import outdir

EPISODES_FILE = "meta/episodes/chunk-000/file-000.parquet"
DATA_FILE = "data/chunk-000/file-000.parquet"
TASKS_FILE = "meta/tasks.parquet"


# ---- fixtures ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict[str, Path]:
    """A 6-episode dataset with two 16-px PNG cameras (the debug preset's size) and a random joint tokenizer."""
    from c2c.data.lerobot import LeRobotWriter
    from c2c.policy.testing import random_action_tokenizer

    root = tmp_path_factory.mktemp("io_faults")
    dataset = root / "dataset"
    with LeRobotWriter(dataset, fps=80, action_names=["dx", "dy", "dz", "gripper"],
                       state_names=["x", "y", "z", "gripper"]) as writer:
        for episode in make_smooth_episodes(6, image_size=16):
            episode.images["wrist"] = episode.images["corner2"][:, ::-1].copy()
            writer.add_episode(episode)
        writer.finalize({"generator": "synthetic"})
    tokenizer = root / "tokenizer"
    random_action_tokenizer("joint").save_pretrained(tokenizer)
    return {"dataset": dataset, "tokenizer": tokenizer}


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory) -> Path:
    """A saved random-weight debug policy with Meta-World cameras and a training record (no simulator needed)."""
    from c2c.envs.metaworld_tasks import instruction
    from c2c.policy.policy import PlanExecutePolicy
    from c2c.policy.testing import debug_config, random_action_tokenizer, torch_threads

    directory = tmp_path_factory.mktemp("policy")
    with torch_threads(1):
        policy = PlanExecutePolicy.build(debug_config("plan", cameras=("corner2", "gripperPOV")),
                                         random_action_tokenizer("joint"), instructions=[instruction("reach")])
    policy.save_pretrained(directory)
    record = {"dataset": "data/fake", "c2c": {
        "generator": "metaworld", "tasks": ["reach-v3"], "image_size": 16, "cameras": ["corner2", "gripperPOV"],
        "expert": {"reach-v3": {"seeds_attempted": [11, 12]}}}}
    (directory / "training_data.json").write_text(json.dumps(record))
    return directory


@pytest.fixture
def read_only(tmp_path, monkeypatch) -> Path:
    """A directory whose file system refuses writes: the write check fails there with EROFS, as on a read-only
    mount (where neither root nor anyone else can write)."""
    root = tmp_path / "readonly"
    root.mkdir()
    real_probe = outdir.write_probe

    def probe(directory: Path) -> None:
        if Path(directory).resolve().is_relative_to(root.resolve()):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(directory))
        real_probe(directory)

    monkeypatch.setattr(outdir, "write_probe", probe)
    return root


def _forbid(monkeypatch, target: str) -> None:
    """Replace the function at ``target`` with one that fails the test: the work it does must not start."""
    def called(*_args, **_kwargs):
        raise AssertionError(f"{target} ran although --out could not be written")

    monkeypatch.setattr(target, called)


def _commands(workspace: dict[str, Path], policy_dir: Path, out: Path) -> dict[str, tuple[list[str], str]]:
    """Command line and the function doing its work, per command."""
    dataset, tokenizer = str(workspace["dataset"]), str(workspace["tokenizer"])
    return {
        "tokenizer train": (["tokenizer", "train", "--dataset", dataset, "--out", str(out), "--steps", "1"],
                            "c2c.tokenizer.train.train_tokenizer"),
        "policy train": (["policy", "train", "--dataset", dataset, "--tokenizer", tokenizer, "--out", str(out),
                          "--preset", "debug", "--steps", "1"], "c2c.policy.training.loop.train_policy"),
        "eval metaworld": (["eval", "metaworld", "--policy", str(policy_dir), "--tasks", "reach", "--episodes", "1",
                            "--seed", "0", "--workers", "1", "--out", str(out)],
                           "c2c.eval.metaworld_eval.evaluate_metaworld"),
        "data convert": (["data", "convert", "--src", dataset, "--out", str(out)],
                         "c2c.data.lerobot_v2.convert_dataset"),
        "analyze overlap": (["analyze", "overlap", "--tokenizer", tokenizer, "--out", str(out)],
                            "c2c.analysis.overlap.analyze_overlap"),
    }


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


# ---- --out: read-only, a file -----------------------------------------------------------------------------------
COMMANDS = ["tokenizer train", "policy train", "eval metaworld", "data convert", "analyze overlap"]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_read_only_out_fails_in_one_line_before_any_work(command, workspace, policy_dir, read_only, monkeypatch,
                                                           capsys):
    out = read_only / "out"
    argv, work = _commands(workspace, policy_dir, out)[command]
    _forbid(monkeypatch, work)
    assert main(argv) == 2
    err = _one_line(capsys)
    assert err.startswith("c2c: error: --out ") and str(out) in err and "read-only file system" in err
    assert "choose another --out" in err
    assert not out.exists()  # the directory the check made is gone again


@pytest.mark.parametrize("command", ["tokenizer train", "policy train", "eval metaworld"])
def test_an_existing_read_only_out_fails_too(command, workspace, policy_dir, read_only, monkeypatch, capsys):
    argv, work = _commands(workspace, policy_dir, read_only)[command]
    _forbid(monkeypatch, work)
    assert main(argv) == 2
    err = _one_line(capsys)
    assert f"--out {read_only}: cannot write there (read-only file system)" in err
    assert read_only.is_dir()  # it was there before: left alone


@pytest.mark.parametrize("command", COMMANDS)
def test_a_file_as_out_fails_in_one_line_before_any_work(command, workspace, policy_dir, tmp_path, monkeypatch,
                                                         capsys):
    out = tmp_path / "taken"
    out.write_text("keep me")
    argv, work = _commands(workspace, policy_dir, out)[command]
    _forbid(monkeypatch, work)
    assert main(argv) == 2
    replace = ", pass --overwrite to replace it," if command == "data convert" else ""  # it has --overwrite
    assert _one_line(capsys) == (f"c2c: error: --out {out} is a file, not a directory; remove it{replace} or choose "
                                 "another --out")
    assert out.read_text() == "keep me"


def test_a_file_as_out_of_a_dataset_command_with_overwrite_goes_on(workspace, tmp_path, monkeypatch, capsys):
    """The dataset writer replaces it: only the parent, where the dataset is staged, must be writable."""
    import c2c.data.lerobot_v2 as lerobot_v2

    def convert(src, out, *_args, **_kwargs):
        raise DatasetError(f"converting into {out}")

    monkeypatch.setattr(lerobot_v2, "convert_dataset", convert)
    out = tmp_path / "taken"
    out.write_text("replace me")
    assert main(["data", "convert", "--src", str(workspace["dataset"]), "--out", str(out), "--overwrite"]) == 2
    assert _one_line(capsys) == f"c2c: error: converting into {out}"


def test_a_file_among_the_parents_of_out_is_named(workspace, policy_dir, tmp_path, monkeypatch, capsys):
    (tmp_path / "taken").write_text("")
    argv, work = _commands(workspace, policy_dir, tmp_path / "taken" / "tok")["tokenizer train"]
    _forbid(monkeypatch, work)
    assert main(argv) == 2
    assert f"{tmp_path / 'taken'} is a file, not a directory" in _one_line(capsys)


def test_dataset_commands_check_the_parent_they_stage_in(tmp_path, monkeypatch, capsys):
    """Dataset writers stage beside --out: a read-only parent fails before any rollout even if --out is writable."""
    pytest.importorskip("metaworld")
    parent = tmp_path / "datasets"
    out = parent / "mw"
    out.mkdir(parents=True)
    real_probe = outdir.write_probe

    def probe(directory: Path) -> None:
        if Path(directory).resolve() == parent.resolve():
            raise OSError(errno.EACCES, os.strerror(errno.EACCES), str(directory))
        real_probe(directory)

    monkeypatch.setattr(outdir, "write_probe", probe)
    _forbid(monkeypatch, "c2c.envs.metaworld_demos.generate_metaworld_demos")
    assert main(["data", "metaworld", "--tasks", "reach", "--episodes", "1", "--out", str(out)]) == 2
    err = _one_line(capsys)
    assert f"--out {out}: cannot write there (its parent {parent.resolve()}" in err and "permission denied" in err


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores permission bits")
def test_a_directory_without_write_permission_is_refused(workspace, policy_dir, tmp_path, monkeypatch, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        argv, work = _commands(workspace, policy_dir, locked / "tok")["tokenizer train"]
        _forbid(monkeypatch, work)
        assert main(argv) == 2
        assert "permission denied" in _one_line(capsys)
    finally:
        locked.chmod(0o755)


def test_library_entry_points_check_out_before_reading_data(workspace, policy_dir, read_only, monkeypatch):
    """train_tokenizer, train_policy and evaluate_metaworld check --out themselves (the pipeline calls them)."""
    from c2c.eval.metaworld_eval import evaluate_metaworld
    from c2c.policy.training.config import PolicyTrainConfig
    from c2c.policy.training.loop import train_policy
    from c2c.tokenizer.train import TokenizerTrainConfig, train_tokenizer

    for target in ("c2c.tokenizer.train.default_spec", "c2c.tokenizer.train.load_chunks",
                   "c2c.data.lerobot.LeRobotDataset", "c2c.eval.metaworld_eval.run_jobs",
                   "c2c.eval.metaworld_rollouts.load_policy"):
        _forbid(monkeypatch, target)
    out = read_only / "out"
    with pytest.raises(OutputError, match="read-only file system"):
        train_tokenizer(TokenizerTrainConfig(dataset=str(workspace["dataset"]), out=str(out), steps=1))
    with pytest.raises(OutputError, match="read-only file system"):
        train_policy(PolicyTrainConfig(dataset=str(workspace["dataset"]), tokenizer=str(workspace["tokenizer"]),
                                       out=str(out), preset="debug", steps=1))
    with pytest.raises(OutputError, match="read-only file system"):
        evaluate_metaworld(policy_dir, "reach", episodes=1, seed=0, out=out, workers=1, show_progress=False)
    assert not out.exists()


# ---- no empty --out left behind ---------------------------------------------------------------------------------
def test_a_failed_command_removes_the_out_it_made(tmp_path, capsys):
    out = tmp_path / "runs" / "deep" / "tok"
    assert main(["tokenizer", "train", "--dataset", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert "nowhere" in _one_line(capsys)
    assert not (tmp_path / "runs").exists()  # the parents it made too


def test_a_failed_command_keeps_an_out_it_wrote_into_or_found(tmp_path, monkeypatch, capsys):
    import c2c.tokenizer.train as tokenizer_train

    found = tmp_path / "found"
    found.mkdir()
    assert main(["tokenizer", "train", "--dataset", str(tmp_path / "nowhere"), "--out", str(found)]) == 2
    assert found.is_dir()  # not made by this command: left alone

    def write_then_fail(config, **_kwargs):
        (Path(config.out) / "train_config.json").write_text("{}")
        raise DatasetError("late failure")

    monkeypatch.setattr(tokenizer_train, "train_tokenizer", write_then_fail)
    out = tmp_path / "written"
    assert main(["tokenizer", "train", "--dataset", str(tmp_path), "--out", str(out)]) == 2
    assert (out / "train_config.json").is_file()  # work is never deleted
    capsys.readouterr()


def test_interrupting_a_command_removes_the_empty_out_it_made(tmp_path, monkeypatch, capsys):
    import c2c.tokenizer.train as tokenizer_train

    def interrupted(config, **_kwargs):
        (Path(config.out) / "tensorboard").mkdir()  # directories only: still nothing written
        raise KeyboardInterrupt

    monkeypatch.setattr(tokenizer_train, "train_tokenizer", interrupted)
    out = tmp_path / "tok"
    assert main(["tokenizer", "train", "--dataset", str(tmp_path), "--out", str(out)]) == 130
    assert "interrupted" in _one_line(capsys)
    assert not out.exists()


# ---- damaged datasets -------------------------------------------------------------------------------------------
def _copy_dataset(workspace: dict[str, Path], tmp_path: Path) -> Path:
    return Path(shutil.copytree(workspace["dataset"], tmp_path / "dataset"))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _rewrite_data(root: Path, change) -> Path:
    """Rewrite the data parquet through ``change(table) -> table``, one row group per episode as the writer does."""
    path = root / DATA_FILE
    table = change(pq.read_table(path))
    with pq.ParquetWriter(path, table.schema) as writer:
        for episode in sorted(set(table["episode_index"].to_pylist())):
            writer.write_table(table.filter(pc.equal(table["episode_index"], episode)))
    return path


def _row(table: pa.Table, episode: int, frame: int) -> int:
    episodes, frames = table["episode_index"].to_pylist(), table["frame_index"].to_pylist()
    return next(i for i, pair in enumerate(zip(episodes, frames)) if pair == (episode, frame))


def _with_nan_action(table: pa.Table, episode: int, frame: int, dim: int) -> pa.Table:
    column = table["action"].combine_chunks()
    values = column.flatten().to_numpy().copy().reshape(len(column), -1)
    values[_row(table, episode, frame), dim] = np.nan
    array = pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), values.shape[1])
    return table.set_column(table.schema.get_field_index("action"), "action", array)


def _with_corrupt_png(table: pa.Table, key: str, episode: int, frame: int) -> pa.Table:
    items = table[key].to_pylist()
    row = _row(table, episode, frame)
    items[row] = {**items[row], "bytes": items[row]["bytes"][:40]}  # a PNG cut off after its header
    return table.set_column(table.schema.get_field_index(key), key, pa.array(items, type=table.schema.field(key).type))


@pytest.mark.parametrize("name, what", [(EPISODES_FILE, "episodes"), (TASKS_FILE, "tasks")])
def test_a_truncated_meta_parquet_is_named(name, what, workspace, tmp_path, capsys):
    dataset = _copy_dataset(workspace, tmp_path)
    _truncate(dataset / name)
    with pytest.raises(DatasetError, match=f"^{dataset / name}: cannot read {what} "):
        LeRobotDataset(dataset)
    assert main(["tokenizer", "train", "--dataset", str(dataset), "--out", str(tmp_path / "tok")]) == 2
    err = _one_line(capsys)
    assert f"{dataset / name}: cannot read {what}" in err and "write the dataset again" in err
    assert not (tmp_path / "tok").exists()


def test_a_truncated_data_parquet_is_named(workspace, tmp_path, capsys):
    dataset = _copy_dataset(workspace, tmp_path)
    _truncate(dataset / DATA_FILE)
    loaded = LeRobotDataset(dataset)  # the metadata is intact
    with pytest.raises(DatasetError, match=f"^{dataset / DATA_FILE}: cannot read data "):
        loaded.episode(0)
    assert main(["tokenizer", "train", "--dataset", str(dataset), "--out", str(tmp_path / "tok")]) == 2
    assert f"{dataset / DATA_FILE}: cannot read data" in _one_line(capsys)


def test_a_corrupt_png_names_file_episode_and_frame(workspace, tmp_path, capsys):
    from c2c.data.streaming import FrameStore

    dataset = _copy_dataset(workspace, tmp_path)
    path = _rewrite_data(dataset, lambda table: _with_corrupt_png(table, "observation.images.wrist", 2, 5))
    loaded = LeRobotDataset(dataset)
    expected = f"{path} episode 2 'observation.images.wrist' frame 5: cannot decode the image"
    with pytest.raises(DatasetError) as error:
        loaded.episode(2)
    assert str(error.value).startswith(expected) and "write the dataset again" in str(error.value)
    loaded.episode(1)  # the other episodes read as before

    store = FrameStore(loaded, ["wrist"])  # the streaming loader names the same frame
    start = sum(row["length"] for row in loaded._episodes[:2])
    with pytest.raises(DatasetError, match=f"^{path} episode 2 frame 5 'observation.images.wrist': cannot decode"):
        store.frame("wrist", start + 5)

    out = tmp_path / "policy"
    code = main(["policy", "train", "--dataset", str(dataset), "--tokenizer", str(workspace["tokenizer"]), "--out",
                 str(out), "--preset", "debug", "--steps", "1", "--loader", "memory"])
    assert code == 2
    assert _one_line(capsys).startswith(f"c2c: error: {expected}")


def test_nan_in_an_action_names_file_episode_and_frame(synthetic_dataset, tmp_path, capsys):
    path = _rewrite_data(synthetic_dataset, lambda table: _with_nan_action(table, 3, 7, 1))
    loaded = LeRobotDataset(synthetic_dataset)
    with pytest.raises(DatasetError, match=r"episode 3.*'action' has a non-finite value \(nan\) at frame 7, dim 1"):
        loaded.episode(3)
    with pytest.raises(DatasetError, match=rf"^{path}: 'action' has a non-finite value \(nan\) at episode 3, frame 7"):
        loaded.frame_arrays(["action", "episode_index"])

    out = tmp_path / "tok"
    assert main(["tokenizer", "train", "--dataset", str(synthetic_dataset), "--out", str(out)]) == 2
    err = _one_line(capsys)
    assert str(path) in err and "episode 3, frame 7, dim 1" in err and "drop or repair that episode" in err
    assert not out.exists()


def test_a_damaged_video_names_the_file_and_episode(tmp_path):
    """An mp4 cut short: the frames it lacks are named with the file and the episode."""
    pytest.importorskip("av")
    from c2c.data.lerobot import LeRobotWriter

    root = tmp_path / "video"
    with LeRobotWriter(root, fps=10, image_format="video") as writer:
        for episode in make_smooth_episodes(3, image_size=16):
            writer.add_episode(episode)
        writer.finalize()
    video = next((root / "videos").rglob("*.mp4"))
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 3])
    loaded = LeRobotDataset(root)
    with pytest.raises(DatasetError, match=rf"^{video} \(episode 2 'observation.images.corner2'\): "):
        loaded.episode(2)


# ---- the top-level rule -----------------------------------------------------------------------------------------
def test_c2c_debug_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("C2C_DEBUG", "1")
    with pytest.raises(DatasetError, match="nowhere"):
        main(["tokenizer", "train", "--dataset", str(tmp_path / "nowhere"), "--out", str(tmp_path / "tok")])
    assert not (tmp_path / "tok").exists()  # the re-raise still cleans up


def test_c2c_debug_traceback_on_stderr(tmp_path):
    """Through a real process: one line without C2C_DEBUG, the traceback with it."""
    argv = [sys.executable, "-m", "c2c", "data", "convert", "--src", str(tmp_path / "nowhere"), "--out",
            str(tmp_path / "converted")]
    env = {key: value for key, value in os.environ.items() if key != "C2C_DEBUG"}
    plain = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    assert plain.returncode == 2 and plain.stderr.count("\n") == 1 and "Traceback" not in plain.stderr
    debug = subprocess.run(argv, capture_output=True, text=True, env={**env, "C2C_DEBUG": "1"}, timeout=120)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "DatasetError" in debug.stderr


def test_an_unexpected_error_is_one_line_with_its_type(tmp_path, monkeypatch, capsys):
    import c2c.tokenizer.train as tokenizer_train

    def broken(*_args, **_kwargs):
        raise RuntimeError("something broke\nsecond line")

    monkeypatch.delenv("C2C_DEBUG", raising=False)
    monkeypatch.setattr(tokenizer_train, "train_tokenizer", broken)
    assert main(["tokenizer", "train", "--dataset", str(tmp_path), "--out", str(tmp_path / "tok")]) == 1
    assert _one_line(capsys) == ("c2c: error: unexpected RuntimeError: something broke (set C2C_DEBUG=1 for the "
                                 "traceback)")
    monkeypatch.setenv("C2C_DEBUG", "1")
    with pytest.raises(RuntimeError, match="something broke"):
        main(["tokenizer", "train", "--dataset", str(tmp_path), "--out", str(tmp_path / "tok")])


@pytest.mark.parametrize("code, reason", [(errno.ENOSPC, "no space left on the device"),
                                          (errno.EACCES, "permission denied")])
def test_an_os_error_while_writing_names_the_path(code, reason, tmp_path, monkeypatch, capsys):
    import c2c.tokenizer.train as tokenizer_train

    target = tmp_path / "tok" / "model.safetensors"

    def full(config, **_kwargs):
        raise OSError(code, os.strerror(code), str(target))

    monkeypatch.setattr(tokenizer_train, "train_tokenizer", full)
    assert main(["tokenizer", "train", "--dataset", str(tmp_path), "--out", str(tmp_path / "tok")]) == 1
    assert _one_line(capsys).startswith(f"c2c: error: {target}: {reason}; ")


def test_atomic_writes_name_the_file_they_cannot_write(tmp_path, monkeypatch):
    from c2c.utils import io

    def full(path, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(io, "_atomic_write", full)
    with pytest.raises(OutputError, match=rf"^{tmp_path / 'results.json'}: cannot write it \(no space left"):
        io.atomic_write_json(tmp_path / "results.json", {})


# ---- evaluation keeps what finished -----------------------------------------------------------------------------
def test_partial_records_are_written_as_they_come(tmp_path, capsys):
    from c2c.eval.partial import PARTIAL_FILE, PartialRecords, read_partial_records

    with pytest.raises(RuntimeError):
        with PartialRecords(tmp_path, policy="p") as partial:
            partial.add({"episode": 0, "success": True})
            assert read_partial_records(tmp_path / PARTIAL_FILE) == [{"episode": 0, "success": True}]  # on disk now
            partial.add({"episode": 1, "success": False})
            raise RuntimeError("episode 2 crashed")
    assert [r["episode"] for r in read_partial_records(tmp_path / PARTIAL_FILE)] == [0, 1]
    assert f"the records of the 2 episodes that finished are in {tmp_path / PARTIAL_FILE}" in capsys.readouterr().err
    partial.remove()
    assert not (tmp_path / PARTIAL_FILE).exists()

    (tmp_path / "first").mkdir()
    with pytest.raises(RuntimeError):
        with PartialRecords(tmp_path / "first", policy="p"):
            raise RuntimeError("the first episode crashed")
    assert not (tmp_path / "first" / PARTIAL_FILE).exists()  # nothing finished: nothing kept


@pytest.mark.sim
def test_metaworld_evaluation_keeps_finished_episodes_when_saving_fails(policy_dir, tmp_path, monkeypatch, capsys):
    """The disk fills up as results.json is written: the finished episodes are in results.partial.jsonl."""
    if importlib.util.find_spec("metaworld") is None:
        pytest.skip("metaworld is not installed (pip install -e '.[sim]')")
    import c2c.envs.metaworld_env  # noqa: F401 - before mujoco: it picks OSMesa
    from c2c.eval.partial import PARTIAL_FILE, read_partial_records
    from c2c.utils import io

    real_write = io._atomic_write

    def full_disk(path, data):
        if Path(path).name == "results.json":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write(path, data)

    monkeypatch.setattr(io, "_atomic_write", full_disk)
    out = tmp_path / "eval"
    argv = ["eval", "metaworld", "--policy", str(policy_dir), "--tasks", "reach", "--episodes", "2", "--seed", "0",
            "--max-steps", "3", "--workers", "1", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"c2c: error: {out / 'results.json'}: cannot write it (no space left on the device)" in err
    assert f"the records of the 2 episodes that finished are in {out / PARTIAL_FILE}" in err
    records = read_partial_records(out / PARTIAL_FILE)
    assert [(r["task"], r["episode"]) for r in records] == [("reach-v3", 0), ("reach-v3", 1)]
    assert all(r["steps"] <= 3 for r in records)

    monkeypatch.setattr(io, "_atomic_write", real_write)
    assert main(argv) == 0  # a run that saves its results removes the partial file
    assert (out / "results.json").is_file() and not (out / PARTIAL_FILE).exists()
