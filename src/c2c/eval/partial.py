"""Episode records written as the episodes finish, so a failure late in an evaluation keeps the ones that finished.

``<out>/results.partial.jsonl``: a first line ``{"partial": true, "started": ..., <what was evaluated>}``, then one JSON
object per finished episode, each line flushed to disk when written. The evaluation removes the file once
``results.json`` is written; after a failure it stays, and one line on stderr names it.

Example::

    with PartialRecords(out, policy="runs/plan", tasks=["reach-v3"], episodes=20) as partial:
        for record in run_episodes():
            partial.add(record)
    with partial.saving():  # removed once results.json is written
        write_outputs(results, out)
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from c2c.errors import OutputError
from c2c.utils.outdir import write_failure_hint

PARTIAL_FILE = "results.partial.jsonl"


class PartialRecords:
    """Appends episode records to ``<out>/results.partial.jsonl`` (replacing one an earlier run left)."""

    def __init__(self, out: str | Path, **header: Any) -> None:
        self.path = Path(out) / PARTIAL_FILE
        self.count = 0
        self._handle = None
        try:
            self._handle = self.path.open("w", encoding="utf-8")
        except OSError as error:
            self._fail(error)
        self._write({"partial": True, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **header})

    def add(self, record: dict[str, Any]) -> None:
        """Append one finished episode's record."""
        self._write(record)
        self.count += 1

    def _write(self, entry: dict[str, Any]) -> None:
        try:
            self._handle.write(json.dumps(entry, default=str) + "\n")
            self._handle.flush()
            os.fsync(self._handle.fileno())
        except OSError as error:
            self._fail(error)

    def _fail(self, error: OSError) -> None:
        reason, fix = write_failure_hint(error, "--out")
        raise OutputError(f"{self.path}: cannot write the records of finished episodes ({reason}); {fix}") from None

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def remove(self) -> None:
        """The evaluation is saved: the records are in results.json."""
        self.close()
        self.path.unlink(missing_ok=True)

    @contextmanager
    def saving(self) -> Iterator[None]:
        """Around the writing of results.json: the file goes when it succeeds, and is named when it fails."""
        try:
            yield
        except BaseException:
            self.keep()
            raise
        self.remove()

    def __enter__(self) -> "PartialRecords":
        return self

    def keep(self) -> None:
        """The evaluation failed: close the file and name it on stderr when it holds records, else remove it."""
        self.close()
        if self.count:
            print(f"c2c: the records of the {self.count} episodes that finished are in {self.path}", file=sys.stderr)
        else:
            self.path.unlink(missing_ok=True)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if exc_type is not None:
            self.keep()


def read_partial_records(path: str | Path) -> list[dict[str, Any]]:
    """The episode records of a results.partial.jsonl (its header line left out; a torn last line ignored)."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # the line being written when the process died
        if isinstance(entry, dict) and not entry.get("partial"):
            records.append(entry)
    return records
