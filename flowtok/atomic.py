"""Atomic file writes: temp file in the same folder, fsync, rename.

Readers never see a half-written file, and an interrupted write (kill, disk full) leaves the
previous version intact. ``mkstemp``/``mkdtemp`` create private (0600 / 0700) temporaries;
``open_to_umask`` gives them the mode a plain ``open``/``mkdir`` would have, before they are
renamed into place.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def open_to_umask(path: str | os.PathLike) -> None:
    """chmod a temp file to 0666 & ~umask, a temp folder to 0777 & ~umask."""
    path = Path(path)
    path.chmod((0o777 if path.is_dir() else 0o666) & ~current_umask())


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        open_to_umask(tmp)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))
