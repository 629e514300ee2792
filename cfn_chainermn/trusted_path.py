"""Folders entered from the top one at a time, never through a link, each checked as it is entered.

Root acting by path below folders others can write would follow whatever they put on the way: a
link, or a folder of theirs swapped in after a check. Here each folder is opened relative to its
parent's descriptor (O_NOFOLLOW | O_DIRECTORY, and O_PATH: entered without read permission) and
checked on that descriptor (fstat), so what is checked is what is entered and nothing below a
refused folder is touched. A missing folder is made 0o700 (mkdirat; one that exists, EEXIST, is
someone's and is only entered and checked like any other) and opened up to its mode only once
checked. Used for the local state folder (local/state_dir.py) and the node's shared mount point
(node/mount_path.py); each says who may own and write the folders on the way.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Literal

# O_PATH (Linux): a folder is entered without read permission on it; elsewhere O_RDONLY does.
_DIR = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

# Called with each folder's status as entered and its path (from "/"); raises to refuse it.
Check = Callable[[os.stat_result, Path], None]


def foreign(st: os.stat_result, *, sticky_ok: bool) -> Literal["owner", "writable"] | None:
    """Why someone else could change what this folder (or file) holds: its "owner" is neither root
    nor us, or it is "writable" by group or others (unless sticky where `sticky_ok`: others
    cannot rename what is ours in it, yet may create a name first); None when no one else can."""
    if st.st_uid not in (0, os.geteuid()):
        return "owner"
    if st.st_mode & 0o022 and not (sticky_ok and st.st_mode & stat.S_ISVTX):
        return "writable"
    return None


class NotAFolder(NotADirectoryError):
    """What stands where a folder should be: a symbolic link (`link`) or anything else."""

    def __init__(self, path: Path, *, link: bool) -> None:
        super().__init__(errno.ENOTDIR, "a symbolic link" if link else "not a folder", str(path))
        self.path, self.link = path, link


def _enter(dir_fd: int, name: str, path: Path) -> int | None:
    """Open `name` in `dir_fd` as a folder without following a link; None when it is not there."""
    try:
        return os.open(name, _DIR, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno not in (errno.ENOTDIR, errno.ELOOP):  # O_PATH|O_NOFOLLOW gives ENOTDIR for a link
            raise
        try:
            link = stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
        except OSError:
            link = False
        raise NotAFolder(path, link=link) from exc


def reopened(fd: int) -> int:
    """A descriptor of the folder `fd` (O_PATH) names that fchmod and fchown accept."""
    return os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)


def open_walked(target: Path, check: Check, *, create: bool = False, mode: int = 0o755,
                top: Path = Path("/")) -> int | None:
    """A descriptor (O_PATH) of `target`, or None when it is not there and not `create`d.

    `target` is absolute and plain (no ".."); `top` is the real folder standing for "/" (a test's
    root, else "/" itself). Every folder from "/" to `target`, both included, goes through `check`;
    one made here gets `mode` after its check. NotAFolder when a link or a file is on the way.
    """
    if not target.is_absolute() or ".." in target.parts:
        raise ValueError(f"not an absolute plain path: {target}")
    fd = os.open(top, _DIR)
    path = Path("/")
    try:
        check(os.fstat(fd), path)
        for name in target.parts[1:]:
            path = path / name
            made = False
            if create:
                try:
                    os.mkdir(name, 0o700, dir_fd=fd)
                    made = True
                except FileExistsError:
                    pass  # someone's: entered and checked below like any folder not made here
            inner = _enter(fd, name, path)
            if inner is None:
                if create:  # made and gone again: only its owner (us) or a writable parent can do that
                    raise FileNotFoundError(errno.ENOENT, "removed while it was being made", str(path))
                return None
            os.close(fd)
            fd = inner
            check(os.fstat(fd), path)
            if made:
                opened = reopened(fd)
                try:
                    os.fchmod(opened, mode)
                finally:
                    os.close(opened)
        return fd
    except BaseException:
        os.close(fd)
        raise
