"""The shared mount point, walked from the node's / before root makes, mounts or hands it over.

The agent (root) makes the mount point, mounts EFS on it and gives it to the cluster user at
every boot. Were a folder on the way writable by another user, that user could put a link or a
folder of theirs there first (before a reboot, say) and steer root's mkdir, mount and chown
elsewhere. config/mount_point.py refuses the usual such folders by name (/tmp, /var/tmp,
/var/crash), but images have others (/var/spool/samba 1777, /var/lib/php/sessions 1733,
/var/local 2775 root:staff). So every folder from / down to the mount point's parent must be
root's (or the agent's own user's: a test running unprivileged) and writable by no one else:
sticky is no excuse on AWS, since anyone may create the next name in a sticky folder first. The
mount point itself is the cluster user's once handed over; it must only be a folder, not a link.
Walked without following links and checked as entered (trusted_path.py); a refusal fails the
step with one line naming the folder.

A local node's mount point is the local cluster's shared/ folder, below a state folder that may
lie in /tmp: there a sticky folder above is allowed (`sticky_ok`), as for the state folder itself
(local/state_dir.py), since each folder on the way is still checked to be root's or ours.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cfn_chainermn import trusted_path
from cfn_chainermn.errors import AgentError

_FIX = "give a mount point whose every folder above is root's and writable by root alone, such as /mnt/efs"


def _checker(mount_point: Path, sticky_ok: bool) -> trusted_path.Check:
    def check(st: os.stat_result, path: Path) -> None:
        if path == mount_point:
            return  # the cluster user's (or about to be): a plain folder is all it must be
        problem = trusted_path.foreign(st, sticky_ok=sticky_ok)
        if problem == "owner":
            raise AgentError(f"mount point {mount_point}: {path} above it belongs to uid {st.st_uid}, not root: "
                             f"that user could put a link or a folder of theirs on the way; {_FIX}")
        if problem == "writable":
            raise AgentError(f"mount point {mount_point}: {path} above it is writable by other users (mode "
                             f"{oct(stat.S_IMODE(st.st_mode))}): they could put a link or a folder of theirs "
                             f"on the way; {_FIX}")

    return check


def _open(top: Path, mount_point: str, *, sticky_ok: bool) -> int:
    """A descriptor of the mount point, made where missing, walked and checked from `top`."""
    target = Path(mount_point)
    if not target.is_absolute() or ".." in target.parts:
        raise AgentError(f"mount point {mount_point!r} is not an absolute path without '..'; {_FIX}")
    try:
        fd = trusted_path.open_walked(target, _checker(target, sticky_ok), create=True, top=top)
    except trusted_path.NotAFolder as exc:
        raise AgentError(f"mount point {mount_point}: {exc.path} is {exc.strerror}: refused, not followed; "
                         f"{_FIX}") from exc
    assert fd is not None  # create=True
    return fd


def make_mount_point(top: Path, mount_point: str, *, sticky_ok: bool = False) -> None:
    """Check the way to `mount_point` (a node path; `top` stands for the node's /) and make what
    is missing (root's, 0o755), before `mount` is given the path."""
    os.close(_open(top, mount_point, sticky_ok=sticky_ok))


def own_mount_point(top: Path, mount_point: str, owner: tuple[int, int], *, sticky_ok: bool = False) -> None:
    """Hand the mount point (the file system's root once mounted) to `owner` through the
    descriptor checked on the way, never a link's target. (-1, -1): keep root's."""
    fd = _open(top, mount_point, sticky_ok=sticky_ok)
    try:
        if owner[0] >= 0:
            opened = trusted_path.reopened(fd)
            try:
                os.fchown(opened, *owner)
            finally:
                os.close(opened)
    finally:
        os.close(fd)
