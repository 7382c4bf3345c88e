"""Atomic writes: a temporary beside the target, fsync, rename. The two ways every writer uses:

- ``AtomicFile`` (and ``write_bytes_atomic`` / ``write_text_atomic`` on top of it): one file;
- ``replace_folder``: a whole folder (model folders, checkpoints, data sets), filled in a temp
  folder that replaces the target at the end, the old one kept as ``.NAME.old`` until then.

Readers never see a half-written file or folder, and an interrupted write (kill, disk full)
leaves the previous version intact. ``mkstemp``/``mkdtemp`` create private (0600 / 0700)
temporaries; ``open_to_umask`` gives them the mode a plain ``open``/``mkdir`` would have, before
they are renamed into place.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def open_to_umask(path: str | os.PathLike) -> None:
    """chmod a temp file to 0666 & ~umask, a temp folder to 0777 & ~umask."""
    path = Path(path)
    path.chmod((0o777 if path.is_dir() else 0o666) & ~current_umask())


def fsync_file(path: str | os.PathLike) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename inside ``path`` durable; silently skipped where folders cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AtomicFile:
    """A binary temp file ``.NAME.XXXX.tmp`` beside ``path`` that replaces ``path`` on
    ``commit()`` (flush, fsync, rename) or disappears on ``abort()``. As a context manager it
    yields the open file and commits when the block succeeds, aborts when it raises."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.",
                                   suffix=".tmp")
        self.tmp = Path(tmp)
        try:
            open_to_umask(self.tmp)
            self.file: BinaryIO = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            self.tmp.unlink(missing_ok=True)
            raise

    def commit(self) -> None:
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.tmp, self.path)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        self.file.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> BinaryIO:
        return self.file

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with AtomicFile(path) as f:
        f.write(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def backup_path(path: str | os.PathLike) -> Path:
    """Where ``replace_folder`` keeps the previous folder while it swaps: ``.NAME.old``."""
    path = Path(path)
    return path.with_name(f".{path.name}.old")


@contextmanager
def replace_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temp folder ``.NAME.XXXX.tmp`` beside ``path`` (umask permissions) to
    fill; when the block succeeds, fsync every file in it and rename it to ``path``. An existing
    ``path`` is first renamed to ``backup_path(path)`` and deleted once the new folder is in
    place (a reader that finds only the backup after a crash can put it back). When the block
    raises, the temp folder is deleted and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        open_to_umask(tmp)
        yield tmp
        for folder, _, files in os.walk(tmp):
            for name in files:
                fsync_file(Path(folder) / name)
        old = backup_path(path)
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        fsync_dir(path.parent)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
