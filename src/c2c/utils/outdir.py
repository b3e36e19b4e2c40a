"""Output directories: checked before the work starts, removed again when a failed command left them empty.

:func:`check_out_dir` creates the directory (and missing parents) and writes and deletes a small file in it, so a
read-only disk, a missing permission or a file in the way fails in one line naming the path and the fix before
hours of work, not when the results are saved. The check writes a real file because permission bits say nothing
for root and nothing about a read-only mount.

Example::

    with output_directory(Path("runs/eval"), "--out"):   # checked now
        evaluate(...)                                      # fails before writing anything: the directory it made goes
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from c2c.errors import OutputError

PROBE_PREFIX = ".c2c-write-check-"

_REASONS = {
    errno.EROFS: ("read-only file system", "choose another {what} on a writable disk"),
    errno.EACCES: ("permission denied", "fix the permissions or choose another {what}"),
    errno.EPERM: ("operation not permitted", "fix the permissions or choose another {what}"),
    errno.ENOSPC: ("no space left on the device", "free some disk space or choose another {what}"),
    errno.EDQUOT: ("disk quota exceeded", "free some disk space or choose another {what}"),
}


def write_failure_hint(error: OSError, what: str = "--out") -> tuple[str, str]:
    """(reason, fix) for an OSError met while writing an output, both short phrases."""
    reason, fix = _REASONS.get(error.errno or 0, (error.strerror or str(error), "choose another {what}"))
    return reason, fix.format(what=what)


def write_probe(directory: Path) -> None:
    """Create, write, flush and delete a temporary file in ``directory``; the OSError of the first step that fails."""
    descriptor, name = tempfile.mkstemp(prefix=PROBE_PREFIX, dir=directory)
    try:
        os.write(descriptor, b"c2c\n")
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
        os.unlink(name)


def _file_in_the_way(path: Path) -> Path | None:
    """``path`` or the first of its parents that exists and is not a directory, else None."""
    for candidate in reversed((path, *path.parents)):
        try:
            if candidate.exists() and not candidate.is_dir():
                return candidate
        except OSError:
            return None  # not reachable: mkdir names the problem
    return None


def _missing(path: Path) -> list[Path]:
    """The directories ``path.mkdir(parents=True)`` would create, outermost first."""
    missing = []
    for candidate in (path, *path.parents):
        try:
            if candidate.exists() or candidate.is_symlink():
                break
        except OSError:
            break
        missing.append(candidate)
    return missing[::-1]


def check_out_dir(path: str | Path, what: str = "--out", *, staging_beside: bool = False,
                  overwrite: bool | None = None) -> list[Path]:
    """Create ``path`` unless it exists and check that files can be written there (and, with ``staging_beside``, in
    its parent: dataset writers stage beside the target). Returns the directories it created, outermost first; an
    :class:`OutputError` naming the path and the fix when the directory cannot be made or written (then nothing it
    made is left behind). ``overwrite``: None for a command without ``--overwrite``; True when a file at ``path``
    is to be replaced (then only its parent is checked)."""
    path = Path(path)
    blocker = _file_in_the_way(path)
    if blocker == path and overwrite and staging_beside:
        _probe(path.absolute().parent, path, what)
        return []
    if blocker == path:
        replace = ", pass --overwrite to replace it," if overwrite is False else ""
        raise OutputError(f"{what} {path} is a file, not a directory; remove it{replace} or choose another {what}")
    if blocker is not None:
        raise OutputError(f"{what} {path}: {blocker} is a file, not a directory; choose another {what}")
    created = _missing(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        remove_empty_dirs(created)
        reason, fix = write_failure_hint(error, what)
        raise OutputError(f"{what} {path}: cannot create the directory ({reason}); {fix}") from None
    try:
        for directory in (path, path.absolute().parent) if staging_beside else (path,):
            _probe(directory, path, what)
    except OutputError:
        remove_empty_dirs(created)
        raise
    return created


def _probe(directory: Path, path: Path, what: str) -> None:
    try:
        write_probe(directory)
    except OSError as error:
        reason, fix = write_failure_hint(error, what)
        where = "" if directory == path else f" (its parent {directory}, where the dataset is staged)"
        raise OutputError(f"{what} {path}: cannot write there{where} ({reason}); {fix}") from None


def _holds_files(directory: Path) -> bool:
    try:
        for _root, _dirs, files in os.walk(directory, onerror=_raise):
            if files:
                return True
    except OSError:
        return True  # unreadable: keep it
    return False


def _raise(error: OSError) -> None:
    raise error


def remove_empty_dirs(created: list[Path]) -> None:
    """Remove the directories of ``created`` (outermost first, as :func:`check_out_dir` returns them) that hold no
    file, however deep: the innermost with any empty subdirectories, then its parents while they are empty."""
    if not created:
        return
    innermost = created[-1]
    if innermost.is_dir() and not innermost.is_symlink() and not _holds_files(innermost):
        shutil.rmtree(innermost, ignore_errors=True)
    for directory in reversed(created[:-1]):
        try:
            directory.rmdir()
        except OSError:
            return  # not empty (or already gone): the parents stay too


@contextmanager
def output_directory(path: str | Path, what: str = "--out", *, staging_beside: bool = False,
                     overwrite: bool | None = None) -> Iterator[Path]:
    """:func:`check_out_dir` now; when the block raises (an error, Ctrl-C), the directories the check created are
    removed again if nothing was written into them."""
    created = check_out_dir(path, what, staging_beside=staging_beside, overwrite=overwrite)
    try:
        yield Path(path)
    except BaseException:
        remove_empty_dirs(created)
        raise
