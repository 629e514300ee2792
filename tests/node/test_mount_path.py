"""The way to the shared mount point is root's alone, or the agent touches nothing there.

The agent (root) makes the mount point, mounts EFS on it and hands it to the cluster user at
every boot, by path. Here a node's / is a test root, and a folder on the way to the mount point
is planted as an image could have it (sticky and world-writable like /var/spool/samba, 1733 like
/var/lib/php/sessions, group-writable like Debian's /var/local, another user's) or replaced by
a link: each is refused in one line naming it, before anything is made, mounted or chowned.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from node_sim import SimCluster

from cfn_chainermn.errors import AgentError
from cfn_chainermn.node import agent
from cfn_chainermn.node.mount_path import make_mount_point, own_mount_point

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: plants folders of nobody's")
NOBODY = (65534, 65534)
MOUNT_POINT = "/var/spool/samba/efs"


@pytest.fixture
def top(tmp_path: Path) -> Path:
    """A node's /, with /var/spool/samba as root made it (0o755)."""
    root = tmp_path / "node"
    (root / "var/spool/samba").mkdir(parents=True)
    for folder in (root, root / "var", root / "var/spool", root / "var/spool/samba"):
        folder.chmod(0o755)
    return root


def _mode(mode: int) -> Callable[[Path], None]:
    return lambda folder: folder.chmod(mode)


def _nobodys(folder: Path) -> None:
    os.chown(folder, *NOBODY)


def _link(folder: Path) -> None:
    """samba swapped for a link to a root folder elsewhere (as if its parent were writable)."""
    elsewhere = folder.parent.parent.parent.parent / "elsewhere"
    elsewhere.mkdir(mode=0o755)
    folder.rmdir()
    folder.symlink_to(elsewhere)


def _file(folder: Path) -> None:
    folder.rmdir()
    folder.write_text("not a folder\n")


WRITABLE = "/var/spool/samba above it is writable by other users (mode {})"
PLANTED: dict[str, tuple[Callable[[Path], None], str]] = {
    "sticky and world-writable": (_mode(0o1777), WRITABLE.format("0o1777")),
    "sticky, writable, not listable": (_mode(0o1733), WRITABLE.format("0o1733")),
    "group-writable": (_mode(0o2775), WRITABLE.format("0o2775")),
    "another user's": (_nobodys, "/var/spool/samba above it belongs to uid 65534, not root"),
    "a link": (_link, "/var/spool/samba is a symbolic link: refused, not followed"),
    "a file": (_file, "/var/spool/samba is not a folder: refused, not followed"),
}


@pytest.mark.parametrize("planted", list(PLANTED))
def test_a_folder_on_the_way_others_could_change_is_refused_before_anything_is_made(planted: str, top: Path) -> None:
    plant, reason = PLANTED[planted]
    samba = top / "var/spool/samba"
    plant(samba)
    elsewhere = top / "elsewhere"
    for call in (lambda: make_mount_point(top, MOUNT_POINT),
                 lambda: own_mount_point(top, MOUNT_POINT, NOBODY)):
        with pytest.raises(AgentError) as caught:
            call()
        message = str(caught.value)
        assert message.startswith(f"mount point {MOUNT_POINT}: ") and reason in message, message
        assert "\n" not in message and "such as /mnt/efs" in message
        assert not (samba / "efs").exists() and not (samba / "efs").is_symlink(), "nothing made below it"
        assert not elsewhere.exists() or list(elsewhere.iterdir()) == [], "nothing made where a link points"


def test_the_mount_point_is_made_root_s_and_handed_over_through_a_checked_path(top: Path) -> None:
    """What is missing is made 0o755 by root; the mount point goes to the user, and is theirs at
    the next boot: its own owner and mode are the user's business, its way is root's."""
    mount_point = "/mnt/shared/efs"
    make_mount_point(top, mount_point)
    for folder in (top / "mnt", top / "mnt/shared", top / "mnt/shared/efs"):
        st = folder.lstat()
        assert stat.S_ISDIR(st.st_mode) and st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o755, folder
    own_mount_point(top, mount_point, NOBODY)
    efs = top / "mnt/shared/efs"
    assert (efs.stat().st_uid, efs.stat().st_gid) == NOBODY and (top / "mnt/shared").stat().st_uid == 0
    efs.chmod(0o1777)  # the user's own folder, as they like it
    own_mount_point(top, mount_point, NOBODY)  # the next boot
    own_mount_point(top, mount_point, (-1, -1))  # keep the owner: nothing changes hands
    assert efs.stat().st_uid == NOBODY[0]
    with pytest.raises(AgentError, match=r"mount point 'mnt/efs' is not an absolute path without '\.\.'"):
        own_mount_point(top, "mnt/efs", NOBODY)  # a flag of `node boot --backend local`, unchecked before


def test_a_link_in_place_of_the_mount_point_is_not_followed(top: Path) -> None:
    target = top / "etc"
    target.mkdir(mode=0o700)
    (top / "var/spool/samba/efs").symlink_to(target)
    with pytest.raises(AgentError, match=r"/var/spool/samba/efs is a symbolic link: refused, not followed"):
        own_mount_point(top, MOUNT_POINT, NOBODY)
    assert target.stat().st_uid == 0 and stat.S_IMODE(target.stat().st_mode) == 0o700


def test_a_local_node_s_shared_folder_may_lie_below_a_sticky_tmp_but_not_below_another_user_s(top: Path) -> None:
    """`local up` keeps its state folder in /tmp if told to: sticky and root's, like the state
    folder's own check (local/state_dir.py); each folder below must still be root's."""
    tmp = top / "tmp"
    tmp.mkdir()
    tmp.chmod(0o1777)
    (tmp / "cluster").mkdir(mode=0o755)
    own_mount_point(top, "/tmp/cluster/shared", NOBODY, sticky_ok=True)
    assert (tmp / "cluster/shared").stat().st_uid == NOBODY[0]
    with pytest.raises(AgentError, match="/tmp above it is writable by other users"):
        own_mount_point(top, "/tmp/cluster/shared", NOBODY)  # on AWS: refused
    (tmp / "planted").mkdir()
    _nobodys(tmp / "planted")
    with pytest.raises(AgentError, match="/tmp/planted above it belongs to uid 65534"):
        own_mount_point(top, "/tmp/planted/shared", NOBODY, sticky_ok=True)
    assert list((tmp / "planted").iterdir()) == []


def test_boot_fails_the_efs_step_in_one_line_and_mounts_nothing(sim_cluster: SimCluster) -> None:
    c = sim_cluster
    m = c.nodes["master"]
    (m.root / "var/spool/samba").mkdir(parents=True)
    (m.root / "var/spool/samba").chmod(0o1777)
    try:
        agent.boot(c.settings("master", mount_point=MOUNT_POINT), c.clients("master", status="FAILURE"),
                   echo=c.echo())
    except AgentError as exc:
        failure = str(exc)
    else:
        failure = ""
    assert failure == (f"efs step failed: mount point {MOUNT_POINT}: /var/spool/samba above it is writable by other "
                       "users (mode 0o1777): they could put a link or a folder of theirs on the way; give a mount "
                       "point whose every folder above is root's and writable by root alone, such as /mnt/efs")
    assert not (m.root / "var/spool/samba/efs").exists()
    assert not [x for x in (m.root / "var/lib/cfn-chainermn/commands.log").read_text().splitlines()
                if x.startswith("mount ")]
    assert not (m.root / "etc/fstab").exists() or MOUNT_POINT not in (m.root / "etc/fstab").read_text()
