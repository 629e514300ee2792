"""A state folder is trusted only when no other user could have planted it (issue 12 item 6).

Its cluster.json names the user `local down` deletes and the processes it stops, and where the
job commands send jobs: as root, a folder another user made or can write would let that user
choose them. Here a planted cluster.json names a throwaway user running a process; every
command refuses it in one line (exit 2), and the process and the user survive.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cfn_chainermn.cli import cli
from cfn_chainermn.cli.boundary import run_with_boundary
from cfn_chainermn.cluster import handle
from cfn_chainermn.errors import ConfigError
from cfn_chainermn.local import state_dir as local_folder

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: makes a user, chowns to nobody")
NOBODY = 65534


@pytest.fixture
def victim() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A user of its own with a process running: what a planted cluster.json would have root remove."""
    name = f"cfnmn-victim-{os.getpid() % 100000}"
    subprocess.run(["useradd", "-M", "-d", "/nonexistent", "-s", "/usr/sbin/nologin", name], check=True)
    proc = subprocess.Popen(["sleep", "300"], user=name)
    try:
        yield name, proc
    finally:
        proc.kill()
        proc.wait()
        subprocess.run(["userdel", name], check=False, capture_output=True)


def plant(folder: Path, user: str) -> Path:
    """The cluster.json another user would write: `down` removes `user` and stops its processes."""
    path = folder / "cluster.json"
    path.write_text(json.dumps({
        "name": "local", "user": user, "home": "/nonexistent", "port": 1, "python": "/bin/false",
        "shared": "/nonexistent", "master_id": "master", "master_ip": "127.0.0.2", "as_root": True,
        "created_user": True, "nodes": [{"id": "master", "ip": "127.0.0.2", "slots": 1}]}))
    return path


def owned_by_nobody(folder: Path) -> Path:
    os.chown(plant(folder, _victim_name(folder)), NOBODY, NOBODY)
    os.chown(folder, NOBODY, NOBODY)
    return folder


def world_writable(folder: Path) -> Path:
    plant(folder, _victim_name(folder))
    folder.chmod(0o777)
    return folder


def planted_file(folder: Path) -> Path:
    os.chown(plant(folder, _victim_name(folder)), NOBODY, NOBODY)
    return folder


def under_a_writable_parent(folder: Path) -> Path:
    """The folder is root's, but its parent (not sticky) lets anyone swap it for another."""
    plant(folder, _victim_name(folder))
    folder.parent.chmod(0o777)
    return folder


def _victim_name(folder: Path) -> str:
    return (folder.parent / "victim").read_text()


SETUPS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "owned by another user": (owned_by_nobody, "belongs to uid 65534"),
    "world-writable": (world_writable, "is writable by other users (mode 0o777)"),
    "cluster.json of another user": (planted_file, "cluster.json belongs to uid 65534"),
    "parent writable by others": (under_a_writable_parent, ", above {folder}, is writable by other users"),
}


@pytest.fixture
def scratch() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="cfnmn-trust-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@as_root
@pytest.mark.parametrize("setup", list(SETUPS))
def test_a_state_folder_others_could_plant_is_refused_and_nothing_is_removed(
        setup: str, scratch: Path, victim: tuple[str, subprocess.Popen[bytes]],
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    name, proc = victim
    (scratch / "victim").write_text(name)
    folder = scratch / "cluster"
    folder.mkdir(mode=0o755)
    make, reason = SETUPS[setup]
    reason = reason.format(folder=folder)
    make(folder)
    before = sorted(p.name for p in folder.iterdir())

    def never(root: Path) -> None:
        raise AssertionError("`local up` went on to clear the folder")

    monkeypatch.setattr(local_folder, "prepare", never)  # if the check were missing, start nothing
    for argv in (["local", "down"], ["local", "up", "--workers", "0"], ["job", "list", "local"]):
        rc = run_with_boundary(cli, [*argv, "--state-dir", str(folder)])
        err = capsys.readouterr().err
        assert rc == 2, (argv, err)
        assert err.startswith("error: --state-dir: ") and reason in err and err.count("\n") == 1, (argv, err)
        assert str(folder) in err and ("yours alone" in err or "chmod go-w" in err), err
        assert proc.poll() is None, argv  # nothing killed
        pwd.getpwnam(name)  # no user deleted
    with pytest.raises(ConfigError, match=re.escape(reason)):
        handle.resolve("local", state_dir=str(folder), access=handle.AwsAccess())
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing written there either


def test_own_folders_are_trusted_in_a_sticky_tmp(scratch: Path) -> None:
    """/tmp is world-writable but sticky and root's: a folder of ours in it is fine, made or not."""
    local_folder.check_trusted(scratch / "not-yet" / "cluster")
    (scratch / "cluster").mkdir(mode=0o755)
    plant(scratch / "cluster", "nobody")
    local_folder.check_trusted(scratch / "cluster")
    (scratch / "cluster").chmod(0o700)
    local_folder.check_trusted(scratch / "cluster")


def test_a_linked_cluster_json_is_refused(scratch: Path) -> None:
    (scratch / "cluster").mkdir(mode=0o755)
    plant(scratch, "nobody")
    (scratch / "cluster" / "cluster.json").symlink_to(scratch / "cluster.json")
    with pytest.raises(ConfigError, match="is not a plain file"):
        local_folder.check_trusted(scratch / "cluster")


def _nobodys_link(link: Path, target: Path) -> Path:
    link.symlink_to(target)
    os.chown(link, NOBODY, NOBODY, follow_symlinks=False)
    return link


@as_root
@pytest.mark.parametrize("planted", ["folder", "link"])
def test_what_another_user_put_where_up_makes_its_folder_is_refused_and_left_alone(
        planted: str, scratch: Path) -> None:
    """/tmp is sticky: anyone may create the folder first. `up` enters it only to refuse it."""
    scratch.chmod(0o1777)
    target = scratch / "elsewhere"
    target.mkdir(mode=0o755)
    folder = scratch / "cluster"
    if planted == "folder":
        folder.mkdir(mode=0o755)
        os.chown(folder, NOBODY, NOBODY)
    else:
        _nobodys_link(folder, target)
    with pytest.raises(ConfigError, match=r"belongs to uid 65534|is a symbolic link") as caught:
        local_folder.prepare(folder)
    assert str(folder) in str(caught.value) and "nothing was changed" in str(caught.value)
    assert os.lstat(folder).st_uid == NOBODY
    assert list(target.iterdir()) == [] and (planted == "link" or list(folder.iterdir()) == [])


@as_root
def test_a_link_put_on_the_way_after_the_path_was_resolved_is_not_followed(scratch: Path) -> None:
    """`up` resolves --state-dir first; a link another user plants on the way afterwards (here: in
    place of a folder `up` would make) must not take root's mkdir and chmod to its target."""
    target = scratch / "theirs"
    target.mkdir(mode=0o755)
    _nobodys_link(scratch / "made-later", target)
    with pytest.raises(ConfigError, match="made-later is a symbolic link"):
        local_folder.prepare(scratch / "made-later" / "cluster")
    assert list(target.iterdir()) == []  # nothing made where the link points


@as_root
def test_another_users_folder_on_the_way_is_refused_before_anything_is_made_in_it(scratch: Path) -> None:
    """Another user's folder on the way would let them swap what root makes in it for a link to a
    file of root's (a chmod by path would then make that file 0o755): it is refused before any mkdir."""
    theirs = scratch / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, NOBODY, NOBODY)
    with pytest.raises(ConfigError) as caught:
        local_folder.prepare(theirs / "cluster")
    assert "theirs, above" in str(caught.value) and "belongs to uid 65534" in str(caught.value)
    assert sorted(p.name for p in theirs.iterdir()) == []  # refused before anything was made there


@as_root
def test_a_folder_swapped_for_a_link_right_after_its_mkdir_is_not_followed(
        scratch: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The window between making a folder and opening it: the folder is swapped for a link to a
    folder of root's the moment mkdir returns. Nobody but root can write here (the checks see to
    that), so the swap is the test's own; what it holds is that the walk opens what stands there
    without following it, never the link's target (entered, it would be made 0o755 and filled)."""
    victim = scratch / "root-only"
    victim.mkdir(mode=0o700)
    real_mkdir = os.mkdir
    made = scratch / "new"

    def mkdir_then_swap(path: Any, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
        real_mkdir(path, mode, dir_fd=dir_fd)
        if path == "new" and not made.is_symlink():
            made.rename(scratch / "moved")
            made.symlink_to(victim)

    monkeypatch.setattr(os, "mkdir", mkdir_then_swap)
    with pytest.raises(ConfigError, match=f"{made} is a symbolic link .*: not followed"):
        local_folder.prepare(made / "cluster")
    assert stat.S_IMODE(victim.stat().st_mode) == 0o700 and list(victim.iterdir()) == []
    assert made.is_symlink() and list((scratch / "moved").iterdir()) == []


@as_root
def test_hand_over_never_follows_a_folder_swapped_for_a_link_after_it_was_listed(
        scratch: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """shared/ is the last user's to change while `up` hands it over: right after jobs/old is
    listed, it becomes a link to a folder of root's holding a file of the same name. That file
    stays root's, and so does a second name of it planted in shared/; the folder moved away, the
    one listed, is handed over."""
    shared = scratch / "shared"
    (shared / "jobs/old").mkdir(parents=True)
    (shared / "jobs/old/result").write_text("theirs\n")
    outside = scratch / "etc"
    outside.mkdir(mode=0o755)
    (outside / "result").write_text("root's\n")
    old = shared / "jobs/old"
    os.link(outside / "result", shared / "jobs/hard")  # another name of root's file (were hard links free)
    listed = os.stat(old)
    for real in (os.listdir, os.scandir):  # either way of listing a folder
        monkeypatch.setattr(os, real.__name__, _swap_after(real, listed, old, outside))
    local_folder.hand_over(shared, NOBODY, NOBODY)
    assert (outside / "result").stat().st_uid == 0 and outside.stat().st_uid == 0
    moved = shared / "jobs/moved"
    assert old.is_symlink() and os.readlink(old) == str(outside)  # swapped, as a job could
    for path in (shared / "jobs", moved, moved / "result"):
        assert os.lstat(path).st_uid == NOBODY, path


def _swap_after(real: Callable[..., Any], listed: os.stat_result, old: Path, outside: Path) -> Callable[..., Any]:
    def listing(target: Any = ".") -> Any:
        found = real(target)
        if not old.is_symlink() and os.path.samestat(os.stat(target), listed):
            old.rename(old.parent / "moved")
            old.symlink_to(outside)
        return found

    return listing


@as_root
def test_hand_over_changes_the_file_it_looked_at_not_what_the_name_holds_by_then(
        scratch: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Right after hand_over looks at shared/mine (one name: the last user's), the name becomes a
    second name of a file of root's (review 4, finding 10): root's file stays root's, the file
    looked at (moved away) is handed over. A link is handed over itself, never its target."""
    shared, outside = scratch / "shared", scratch / "etc"
    shared.mkdir()
    outside.mkdir(mode=0o755)
    (outside / "secret").write_text("root's\n")
    mine = shared / "mine"
    mine.write_text("theirs\n")
    (shared / "link").symlink_to(outside / "secret")
    looked_at = mine.stat().st_ino
    for real in (os.stat, os.fstat, os.lstat):  # however it looks
        monkeypatch.setattr(os, real.__name__, _swap_after_look(real, looked_at, mine, outside / "secret"))
    local_folder.hand_over(shared, NOBODY, NOBODY)
    monkeypatch.undo()
    assert os.path.samefile(mine, outside / "secret")  # swapped, as the last user could
    assert (outside / "secret").stat().st_uid == 0
    assert (scratch / "moved").stat().st_uid == NOBODY
    assert os.lstat(shared / "link").st_uid == NOBODY


def _swap_after_look(real: Callable[..., Any], looked_at: int, name: Path, target: Path) -> Callable[..., Any]:
    def look(*args: Any, **kwargs: Any) -> Any:
        found = real(*args, **kwargs)
        if found.st_ino == looked_at and found.st_nlink == 1 and not (name.parent.parent / "moved").exists():
            name.rename(name.parent.parent / "moved")
            os.link(target, name)
        return found

    return look


@as_root
def test_a_folder_up_makes_is_its_own_and_reachable(scratch: Path) -> None:
    scratch.chmod(0o1777)
    root = scratch / "new" / "cluster"
    local_folder.prepare(root)
    for folder in (scratch / "new", root):
        st = os.lstat(folder)
        assert stat.S_ISDIR(st.st_mode) and st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o755, folder
    assert (root / local_folder.OWNER_FILE).read_text() == local_folder.OWNER_TEXT
    local_folder.check_trusted(root)
