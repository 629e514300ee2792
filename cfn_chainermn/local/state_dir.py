"""The local cluster's state folder: made, marked and cleared only when it is ours.

`local up` clears nodes/, bucket/ and home/ in its folder on every run; these checks make sure
that folder is one `local up` made, never a user's own (`--state-dir ~` or `/`), and that the
cluster's user can reach it. `check_trusted` makes sure no other user could have planted or
swapped what `up`, `down` and the job commands read there (cluster.json names a user to delete,
processes to stop, a master to send jobs to).
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

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


def check_trusted(root: Path) -> None:
    """Refuse a state folder another user could have planted or could swap (`root` resolved).

    The folder and its cluster.json must be the caller's (or root's) and writable by no one else;
    every folder above it too, unless sticky (like /tmp: others cannot rename what is ours in it).
    """
    me = os.geteuid()
    fix = "give a --state-dir that is yours alone (a new folder in /tmp will do)"
    for path in [root / STATE_FILE, root, *root.parents]:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue  # `up` makes it, as this user
        except OSError as exc:
            raise unusable(root, exc) from exc
        if path == root / STATE_FILE and not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"--state-dir: {path} is not a plain file (a link?); {fix} (nothing was changed)")
        above = path not in (root, root / STATE_FILE)
        what = f"{path}, above {root}," if above else str(path)
        if st.st_uid not in (me, 0):
            raise ConfigError(f"--state-dir: {what} belongs to {_owner(st.st_uid)}, not to you ({_owner(me)}): "
                              f"that user could plant a cluster there; {fix} (nothing was changed)")
        if st.st_mode & 0o022 and not (above and st.st_mode & stat.S_ISVTX):
            raise ConfigError(f"--state-dir: {what} is writable by other users (mode "
                              f"{oct(st.st_mode & 0o7777)}): they could plant a cluster there; "
                              f"`chmod go-w {path}` or {fix} (nothing was changed)")


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
    """Make the folder (0o755 only where we create it), mark it ours, clear the last run's files."""
    try:
        for folder in reversed([root, *root.parents]):
            if not folder.exists():
                with contextlib.suppress(FileExistsError):
                    folder.mkdir()
                    os.chmod(folder, 0o755)  # not the umask: the cluster user must reach it
        refuse_foreign(root)  # again, now that it exists: only a folder of ours is cleared below
        (root / OWNER_FILE).write_text(OWNER_TEXT, encoding="utf-8")
        for sub in ("nodes", "bucket", "home", "inventory.json", STATE_FILE):
            path = root / sub
            if path.is_dir() and not path.is_symlink():
                import shutil  # here: it imports bz2 and lzma, ~3 ms of every job command

                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
    except OSError as exc:
        raise unusable(root, exc) from exc


def hand_over(folder: Path, uid: int, gid: int) -> None:
    """Give what an earlier run left in shared/ to this run's user.

    shared/ outlives `down` (results), but the user may differ between runs (`chainer` when
    free, else `cfnmn-<hash>`): a jobs/ folder of the last one would refuse every upload.
    Links are changed themselves, never followed.
    """
    for top, dirs, files in os.walk(folder):
        for name in [*dirs, *files]:
            path = os.path.join(top, name)
            st = os.lstat(path)
            if (st.st_uid, st.st_gid) != (uid, gid):
                os.chown(path, uid, gid, follow_symlinks=False)
