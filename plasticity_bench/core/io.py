"""Atomic file writes: a file appears whole or not at all, with the user's umask (records, checkpoints,
leaderboards, figures and data caches are all written this way)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def _fsync_dir(directory: Path) -> None:
    """Persist a rename in ``directory`` (best effort: not every platform can open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def current_umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> Path:
    """Write a file atomically with ``write(handle)`` (binary handle) and return ``path``.

    The bytes go to a temporary file in the same directory, are flushed and fsynced, and are then moved onto
    ``path`` with ``os.replace``. Readers see either the old file or the complete new one; if anything fails
    the temporary file is removed, nothing appears under ``path``, and the error is re-raised (an
    ``OSError`` naming ``path``, e.g. a folder in its place or a full disk). Missing
    parent directories are created. The file gets mode ``0o666`` minus the umask, like any file the user
    creates (``mkstemp`` alone would leave ``0o600``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise OSError(err.errno, err.strerror, str(path)) from err
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except OSError as err:  # name the file the caller asked for, not the temporary one
        Path(tmp_name).unlink(missing_ok=True)
        if err.errno is None:
            raise
        raise OSError(err.errno, err.strerror, str(path)) from err
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write`) and return ``path``."""
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))
