"""Files that are whole or absent: every write a reader (a concurrent sweep, a resumed one)
might see half-done goes through a temporary name and a rename."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

# The file a checkpoint writes last (`checkpoint.save_whole`): its presence marks the folder whole.
PROGRESS = "progress.json"


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` to write to; renamed onto `path` if the block succeeds,
    removed if it fails. The temporary name keeps `path`'s suffix (numpy appends none then)."""
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def write_json_atomic(path: Path, value: object, indent: int | None = None) -> Path:
    return write_text_atomic(path, json.dumps(value, indent=indent) + ("\n" if indent else ""))
