"""The local cluster's state folder: made, marked and cleared only when it is ours.

`local up` clears nodes/, bucket/ and home/ in its folder on every run; these checks make sure
that folder is one `local up` made, never a user's own (`--state-dir ~` or `/`), and that the
cluster's user can reach it. `check_trusted` makes sure no other user could have planted or
swapped what `up`, `down` and the job commands read there (cluster.json names a user to delete,
processes to stop, a master to send jobs to).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from cfn_chainermn import trusted_path
from cfn_chainermn.errors import ConfigError
from cfn_chainermn.local import places
from cfn_chainermn.local.state import STATE_FILE, load

MARKER = "# cfn-chainermn local cluster node"  # first line of every node's sshd_config
# Kept by `down`: the next `up` may clear only a folder that holds it.
OWNER_FILE = ".cfn-chainermn-local-cluster"
OWNER_TEXT = "made by `cfn-chainermn local up`; `local up` reuses (and clears) only folders holding this file\n"


def check_searchable(root: Path, flag: str = "--state-dir", fix: str = "") -> None:
    """As root: the cluster user must reach `root`. The default fix names places that do work."""
    parent = places.unsearchable(root)
    if parent is None:
        return
    if not fix:
        default = places.default_state_dir().resolve()
        fix = ("Pick a folder such as /tmp/cluster" if places.unsearchable(default) or default == root
               else f"Leave out --state-dir (the default here is {default}) or pick a folder such as /tmp/cluster")
    raise ConfigError(f"{flag}: {parent} is not searchable by other users (mode "
                      f"{oct(os.stat(parent).st_mode & 0o777)}); the cluster user cannot reach "
                      f"{root} there. {fix}")


def _owner(uid: int) -> str:
    import pwd

    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


_FIX = "give a --state-dir that is yours alone (a new folder in /tmp will do)"


def _check(st: os.stat_result, path: Path, root: Path, *, above: bool) -> None:
    """One component, as its descriptor or lstat sees it: the caller's or root's, and writable by
    no one else (a folder above `root` may be, if sticky: others cannot rename what is ours in it)."""
    what = f"{path}, above {root}," if above else str(path)
    problem = trusted_path.foreign(st, sticky_ok=above)
    if problem == "owner":
        raise ConfigError(f"--state-dir: {what} belongs to {_owner(st.st_uid)}, not to you "
                          f"({_owner(os.geteuid())}): that user could plant a cluster there; {_FIX} "
                          "(nothing was changed)")
    if problem == "writable":
        raise ConfigError(f"--state-dir: {what} is writable by other users (mode "
                          f"{oct(st.st_mode & 0o7777)}): they could plant a cluster there; "
                          f"`chmod go-w {path}` or {_FIX} (nothing was changed)")


def open_trusted(root: Path, *, create: bool = False) -> int | None:
    """A descriptor of `root` (absolute, resolved), or None when it is not there and not `create`d.

    Walked from / one folder at a time without following a link, each checked as entered
    (trusted_path.py): a folder or link another user put in place first (or swapped in) is refused,
    never used. A folder made here is 0o755 once checked: the cluster user must reach it. Once every
    folder on the way is trusted, no other user can rename or replace one, so the path keeps
    leading here (`same_folder` re-checks).
    """
    if not root.is_absolute():
        raise ValueError(f"not absolute: {root}")
    try:
        return trusted_path.open_walked(root, lambda st, path: _check(st, path, root, above=path != root),
                                        create=create)
    except trusted_path.NotAFolder as exc:
        if not exc.link:
            raise
        raise ConfigError(f"--state-dir: {exc.path} is a symbolic link (made after {root} was resolved?): "
                          f"not followed; {_FIX} (nothing was changed)") from exc


def same_folder(fd: int, root: Path) -> None:
    """Refuse unless `root`'s path still leads to the folder `fd` was checked as."""
    a, b = os.fstat(fd), os.stat(root, follow_symlinks=False)
    if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino):
        raise ConfigError(f"--state-dir: {root} was replaced while it was checked; {_FIX} (nothing was changed)")


def check_trusted(root: Path) -> None:
    """Refuse a state folder another user could have planted or could swap (`root` resolved).

    The folder and its cluster.json must be the caller's (or root's) and writable by no one else;
    every folder above it too, unless sticky (like /tmp: others cannot rename what is ours in it).
    A folder not there yet is fine: `up` makes it through `open_trusted`, which checks again.
    """
    try:
        fd = open_trusted(root)
        if fd is None:
            return
        try:
            st = os.stat(STATE_FILE, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        finally:
            os.close(fd)
    except OSError as exc:
        raise unusable(root, exc) from exc
    path = root / STATE_FILE
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"--state-dir: {path} is not a plain file (a link?); {_FIX} (nothing was changed)")
    _check(st, path, root, above=False)


def is_ours(root: Path) -> bool:
    """Our mark, or what an older version (no mark) left: its state file, or, after its `down`
    removed that, a node's sshd_config that names this very folder on its first line."""
    if (root / OWNER_FILE).is_file():
        return True
    with contextlib.suppress(OSError, UnicodeDecodeError):
        for conf in (root / "nodes").glob("*/sshd_config"):
            if conf.read_text(encoding="utf-8").partition("\n")[0] == f"{MARKER} state={root}":
                return True
    try:
        return load(root) is not None
    except ConfigError:
        return False


def unusable(root: Path, exc: OSError) -> ConfigError:
    return ConfigError(f"--state-dir: cannot use {root}: {exc.strerror or exc}; give a folder you can write, "
                       "such as /tmp/cluster")


def refuse_foreign(root: Path) -> None:
    """Refuse a folder that `local up` did not make: it would clear nodes/, bucket/ and home/ in it."""
    check_trusted(root)
    try:
        if root.exists() and not root.is_dir():
            raise ConfigError(f"--state-dir: {root} is not a folder; give a new or empty folder such as /tmp/cluster")
        if root.exists() and not is_ours(root) and any(root.iterdir()):
            raise ConfigError(f"--state-dir: {root} is not empty and holds no cfn-chainermn local cluster; give a "
                              "new or empty folder such as /tmp/cluster (nothing in it was changed)")
    except OSError as exc:
        raise unusable(root, exc) from exc


def prepare(root: Path) -> None:
    """Make the folder (0o755 only where we create it), mark it ours, clear the last run's files.

    Made and checked through `open_trusted`; what follows goes by path, which leads to the folder
    checked (`same_folder`) and, with every folder on the way trusted, cannot be redirected.
    """
    try:
        fd = open_trusted(root, create=True)
        assert fd is not None  # create=True
        try:
            same_folder(fd, root)
            refuse_foreign(root)  # again, now that it exists: only a folder of ours is cleared below
            owner = os.open(OWNER_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                            0o644, dir_fd=fd)
            with os.fdopen(owner, "w", encoding="utf-8") as f:
                f.write(OWNER_TEXT)
        finally:
            os.close(fd)
        for sub in ("nodes", "bucket", "home", "inventory.json", STATE_FILE):
            path = root / sub
            if path.is_dir() and not path.is_symlink():
                import shutil  # here: it imports bz2 and lzma, ~3 ms of every job command

                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
    except OSError as exc:
        raise unusable(root, exc) from exc


_SUB = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def hand_over(folder: Path, uid: int, gid: int) -> None:
    """Give what an earlier run left in shared/ to this run's user.

    shared/ outlives `down` (results), but the user may differ between runs (`chainer` when
    free, else `cfnmn-<hash>`): a jobs/ folder of the last one would refuse every upload.
    What is in shared/ is a user's to change while this walks it, so every folder is opened from
    its parent's descriptor without following a link (a folder swapped for a link after it was
    listed is skipped, never entered) and every entry is changed through the descriptor it was
    looked at by, a link itself and never its target (_handed_entry). os.fwalk would not do: it
    opens a listed folder following links and compares afterwards (CPython Lib/os.py, _fwalk:
    open(name, O_RDONLY, dir_fd=topfd) then samestat). A file with more than one name (a hard
    link to someone else's) is left as it is.
    """
    stack = [os.open(folder, _SUB)]  # shared/ itself lies in the state folder, trusted up to /
    try:
        pending = [iter(os.listdir(stack[0]))]
        while stack:
            name = next(pending[-1], None)
            if name is None:
                os.close(stack.pop())
                pending.pop()
                continue
            sub = _handed(stack[-1], name, uid, gid)
            if sub is not None:
                stack.append(sub)
                pending.append(iter(os.listdir(sub)))
    finally:
        for fd in stack:
            os.close(fd)


def _handed(dir_fd: int, name: str, uid: int, gid: int) -> int | None:
    """Hand over `name` in `dir_fd`; a descriptor of it when it is a folder to walk next."""
    try:
        if _handed_entry(dir_fd, name, uid, gid):
            return None
        sub = os.open(name, _SUB, dir_fd=dir_fd)
    except FileNotFoundError:
        return None  # removed meanwhile
    except OSError as exc:
        if exc.errno in (errno.ENOTDIR, errno.ELOOP):
            return None  # swapped for a link or a file since it was looked at: not followed
        raise
    try:
        st = os.fstat(sub)
        if (st.st_uid, st.st_gid) != (uid, gid):
            os.fchown(sub, uid, gid)
    except BaseException:
        os.close(sub)
        raise
    return sub


def _handed_entry(dir_fd: int, name: str, uid: int, gid: int) -> bool:
    """Hand over `name` when it is no folder (True then), looked at and changed through one
    O_PATH descriptor: the name may be swapped meanwhile (for a second name of someone else's
    file), the inode looked at may not. O_PATH opens nothing (a FIFO does not block) and with
    O_NOFOLLOW holds a link itself (open(2), O_PATH); fchown refuses such a descriptor (EBADF),
    the kernel's way is fchownat(fd, "", AT_EMPTY_PATH) (fchownat(2), manpages.ubuntu.com
    trusty man2/fchownat.2) but CPython 3.11 passes no AT_EMPTY_PATH (os.chown("", dir_fd=fd): ENOENT), so it is
    changed through /proc/self/fd/N, whose magic link reaches that inode, a link itself included
    and not its target (proc(5), /proc/pid/fd; tests/local/test_state_trust.py holds both)."""
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            return False
        if st.st_nlink == 1 and (st.st_uid, st.st_gid) != (uid, gid):
            os.chown(f"/proc/self/fd/{fd}", uid, gid)
        return True
    finally:
        os.close(fd)
