"""Crash-safe file writes: a reader sees the old file or the whole new one, never a torn one.

Every writer in rlem-gym (memory saves, run records, results, reports, built data files) goes
through :func:`atomic_write_bytes`: temp file in the target's directory, ``fsync``, ``os.replace``,
then ``fsync`` of the directory so the rename itself survives a power loss.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any

_TMP_FLAGS = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_BINARY", 0)
)


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Flush a directory's entries (a rename into it) to disk; a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def create_temp(path: Path) -> tuple[int, str]:
    """Open a new ``.<name>.<random>.tmp`` next to ``path``, created ``0o666 & ~umask`` like ``open()``."""
    for _ in range(100):
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, _TMP_FLAGS, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary file name next to {path}")  # pragma: no cover


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` (parent folders created) so that readers never see a partial file.

    ``mode`` sets the file's permission bits; ``None`` keeps those of the file being replaced, and
    gives a new file ``0o666 & ~umask`` (what ``open()`` would). On any error the temp file is
    removed and the old ``path``, if any, is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = create_temp(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is None:
            try:
                mode = stat.S_IMODE(os.stat(path).st_mode)
            except FileNotFoundError:
                pass  # a new file: the umask already applied
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """UTF-8 text version of :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], data: Any) -> None:
    """JSON version of :func:`atomic_write_text` (UTF-8, indented, keys in insertion order)."""
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
