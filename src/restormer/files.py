"""Atomic file publication: a reader sees the old file, or the complete new one, never a part.

Every file this package writes (restored images, weights, training checkpoints) goes through
:func:`write_atomically`: the bytes go to a temporary file in the target's folder, are flushed
to disk, and only then appear under the target name. Without ``overwrite`` an existing file is
never replaced, even if it appears while we write.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

_NO_HARD_LINKS = frozenset(
    {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.ENOSYS, errno.EMLINK}
)


def write_atomically(
    target: str | os.PathLike[str],
    write: Callable[[BinaryIO], object] | bytes,
    *,
    overwrite: bool = False,
) -> None:
    """Write ``target`` from ``write(file)`` (or the given bytes) without exposing a partial file.

    Raises ``FileExistsError`` if ``target`` exists and ``overwrite`` is false, and the
    ``OSError`` of any failed step; the temporary file is removed whatever happens.
    """
    target = Path(target)
    if not overwrite and os.path.lexists(target):
        raise FileExistsError(errno.EEXIST, "File exists", str(target))
    tmp: Path | None = _create_temp_file(target, write)
    try:
        if overwrite:
            os.replace(tmp, target)
            tmp = None
        else:
            _publish_without_clobbering(tmp, target)
        _fsync_directory(target.parent)
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _create_temp_file(target: Path, write: Callable[[BinaryIO], object] | bytes) -> Path:
    """Create ``.<name>.<random>.tmp`` next to ``target`` with the content, flushed to disk."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = target.parent / f".{target.name[:200]}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, flags, 0o666)  # 0o666 & ~umask: the permissions of a normal file
        except FileExistsError:
            continue
        try:
            with os.fdopen(fd, "wb") as file:
                if isinstance(write, bytes):
                    file.write(write)
                else:
                    write(file)
                file.flush()
                os.fsync(file.fileno())
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return tmp
    raise FileExistsError(errno.EEXIST, "could not create a temporary file", str(target.parent))


def _publish_without_clobbering(tmp: Path, target: Path) -> None:
    """Give ``tmp`` the name ``target`` unless that name exists (atomically where links work)."""
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        # The file system has no hard links: check, then rename (a small race remains).
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, "File exists", str(target)) from exc
        os.replace(tmp, target)


def _fsync_directory(directory: Path) -> None:
    """Make the new directory entry durable (best effort: not every platform allows it)."""
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
