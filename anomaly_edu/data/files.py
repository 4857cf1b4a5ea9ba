"""Writing a file whole or not at all: a results file, a checkpoint or a
trained model is written to a temporary file beside its place and renamed only
when complete, so an interrupted run never leaves a half-written file.
Lecture 1.
"""

from __future__ import annotations

__lecture__ = 1

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def check_writable(path: str | os.PathLike) -> Path:
    """Raise a clear error now, before a long run, if a results file cannot be
    written at ``path`` later; create nothing. Lecture 1."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"--out {path} is a folder; give a file name, e.g. {path / 'results.json'}")
    if path.exists() and not os.access(path, os.W_OK):
        raise PermissionError(f"--out {path} exists and cannot be overwritten (no write permission)")
    folder = path.parent
    while not folder.exists():  # the first folder that exists must let us create the rest
        folder = folder.parent
    if not folder.is_dir():
        raise NotADirectoryError(f"--out {path} cannot be written: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"--out {path} cannot be written: no permission to write in {folder}")
    return path


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; when the block ends
    without an error, rename it to ``path``, else delete it. An interrupted
    run never leaves a half-written file, and an old file stays as it was.
    Lecture 1."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.chmod(tmp, 0o644)  # mkstemp makes the file private; a results file is for everyone to read
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_json_atomically(data: dict, path: str | os.PathLike) -> None:
    """Write ``data`` as JSON to ``path`` with :func:`atomic_file`. Lecture 1."""
    with atomic_file(path) as f:
        json.dump(data, f, indent=2)
        f.write("\n")
