"""No job becomes root through the agent (issue 12, item 1).

The agent runs as root and writes into the cluster user's home; a job (running as that user)
can swap any of those paths for a link to a root-owned place. Here the cluster user is `nobody`
(the tests run as root), the targets are root-owned files and folders outside the home, and
after boot and after refresh each target is untouched, still root's, the link is left as it is
(refused, not followed or replaced) and the refusal is in the agent's log.
"""

from __future__ import annotations

import io
import os
import pwd
import re
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from node_sim import SimCluster, local_cluster, local_settings

from cfn_chainermn.errors import AgentError
from cfn_chainermn.node import agent
from cfn_chainermn.node.settings import Settings

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to own targets the user cannot")

USER = "nobody"
SECRET = "root-only secret 5f1e"


def _snapshot(target: Path) -> dict[str, tuple[int, int, int, bytes]]:
    """Every entry under (and including) target: uid, gid, mode, bytes."""
    paths = [target, *sorted(target.rglob("*"))] if target.is_dir() else [target]
    return {str(p): (p.lstat().st_uid, p.lstat().st_gid, stat.S_IMODE(p.lstat().st_mode),
                     p.read_bytes() if p.is_file() else b"") for p in paths}


def _root_target(tmp_path: Path, kind: str) -> Path:
    """A root-owned folder (like /etc/update-motd.d) or file outside the home."""
    outside = tmp_path / "etc"
    outside.mkdir(exist_ok=True)
    if kind == "dir":
        target = outside / "update-motd.d"
        target.mkdir()
        (target / "00-header").write_text("#!/bin/sh\necho hello\n")
        target.chmod(0o755)
        return target
    target = outside / "motd"
    target.write_text(SECRET + "\n")
    target.chmod(0o600)
    return target


def _cluster(tmp_path: Path) -> Path:
    """A one-node local cluster whose home is the user's, as `local up` as root leaves it."""
    d = tmp_path / "lc"
    local_cluster(d, ["m"])
    (d / "home").mkdir()
    os.chown(d / "home", pwd.getpwnam(USER).pw_uid, pwd.getpwnam(USER).pw_gid)
    return d


def _settings(d: Path) -> Settings:
    return local_settings(d, ["m"], 0, user=USER)


def _boot(d: Path) -> None:
    agent.boot(_settings(d), echo=io.StringIO())


def _refresh(d: Path) -> None:
    agent.refresh(Settings.load(d / "nodes/m/agent.json"), echo=io.StringIO())


def _failure(run: Callable[[], object]) -> str:
    """The AgentError's message ("" when it succeeded): checked after the target is."""
    try:
        run()
    except AgentError as exc:
        return str(exc)
    return ""


def _assert_refused(d: Path, link: Path, target: Path, before: dict[str, tuple[int, int, int, bytes]]) -> None:
    nobody = pwd.getpwnam(USER).pw_uid
    assert _snapshot(target) == before, "the link's target is untouched"
    assert all(uid != nobody for uid, *_ in before.values())
    assert link.is_symlink() and os.readlink(link) == str(target), "the link is left as the user made it"
    log = (d / "nodes/m/agent.log").read_text()
    assert f"~/{link.relative_to(d / 'home')} in {d / 'home'} is a symbolic link: refused, not followed" in log


@pytest.mark.parametrize("rel,kind", [(".ssh", "dir"), (".ssh/known_hosts", "file"), ("hostfile", "file"),
                                      (".openmpi", "dir"), (".ssh/config", "file")])
def test_linked_path_refused_at_boot(tmp_path: Path, rel: str, kind: str) -> None:
    d = _cluster(tmp_path)
    target = _root_target(tmp_path, kind)
    link = d / "home" / rel
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    before = _snapshot(target)
    failure = _failure(lambda: _boot(d))
    _assert_refused(d, link, target, before)
    assert "is a symbolic link: refused, not followed" in failure


@pytest.mark.parametrize("rel,kind", [(".ssh", "dir"), (".ssh/known_hosts", "file"), ("hostfile", "file")])
def test_linked_path_refused_at_refresh(tmp_path: Path, rel: str, kind: str) -> None:
    d = _cluster(tmp_path)
    _boot(d)
    home = d / "home"
    nobody = pwd.getpwnam(USER).pw_uid
    assert (home / ".ssh").stat().st_uid == nobody and (home / "hostfile").stat().st_uid == nobody
    target = _root_target(tmp_path, kind)
    link = home / rel
    os.rename(link, home / "moved-away")  # what a job can do: its home, its files
    link.symlink_to(target)
    before = _snapshot(target)
    failure = _failure(lambda: _refresh(d))
    _assert_refused(d, link, target, before)
    assert "kept the last good hostfile" in failure


@pytest.mark.parametrize("rel", [".ssh/authorized_keys", ".ssh/id_ed25519"])
def test_linked_file_is_never_read_into_the_users_files(tmp_path: Path, rel: str) -> None:
    """authorized_keys is merged (read, then rewritten as the user's) and the master publishes
    an existing ~/.ssh/id_ed25519: through a link either would copy root's file to the user."""
    d = _cluster(tmp_path)
    target = _root_target(tmp_path, "file")
    (d / "home/.ssh").mkdir()
    (d / "home" / rel).symlink_to(target)
    (d / "home/.ssh/id_ed25519.pub").write_text("ssh-ed25519 AAAA planted\n")
    before = _snapshot(target)
    failure = _failure(lambda: _boot(d))
    leaked = [p for p in d.rglob("*") if p.is_file() and not p.is_symlink() and SECRET.encode() in p.read_bytes()]
    assert leaked == []
    _assert_refused(d, d / "home" / rel, target, before)
    assert "is a symbolic link: refused" in failure


def test_boot_files_belong_to_the_user_without_links(tmp_path: Path) -> None:
    """The ordinary case, as `nobody`: folders and files are the user's, ~/.ssh is 0700."""
    d = _cluster(tmp_path)
    _boot(d)
    _refresh(d)
    home = d / "home"
    nobody = pwd.getpwnam(USER)
    for rel in (".ssh", ".ssh/id_ed25519", ".ssh/authorized_keys", ".ssh/config", ".ssh/known_hosts",
                "hostfile", ".openmpi", ".openmpi/mca-params.conf"):
        st = (home / rel).lstat()
        assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid), rel
    assert stat.S_IMODE((home / ".ssh").stat().st_mode) == 0o700
    assert stat.S_IMODE((home / ".ssh/id_ed25519").stat().st_mode) == 0o600
    assert not [p for p in home.rglob(".*.*") if p.name.startswith((".hostfile.", ".known_hosts."))]


def test_aws_platform_writes_through_the_same_writer(sim_cluster: SimCluster, tmp_path: Path) -> None:
    """On AWS the user step reads and rewrites ~/.bashrc and ssh writes ~/.ssh: both refuse links."""
    c = sim_cluster
    m = c.nodes["master"]
    home = m.root / "home/chainer"
    home.mkdir(parents=True)
    target = _root_target(tmp_path, "file")
    (home / ".bashrc").symlink_to(target)
    before = _snapshot(target)
    failure = _failure(lambda: agent.boot(c.settings("master"), c.clients("master", status="FAILURE"),
                                          echo=c.echo()))
    assert [p for p in home.rglob("*") if p.is_file() and not p.is_symlink() and SECRET in p.read_text()] == []
    assert _snapshot(target) == before and (home / ".bashrc").is_symlink()
    assert re.search(r"user step failed: ~/\.bashrc .* is a symbolic link: refused", failure), failure
    c.stubs[-1].assert_no_pending_responses()
    assert SECRET not in c.get(f"logs/{m.instance_id}/agent.log").decode()

    (home / ".bashrc").unlink()
    motd = _root_target(tmp_path, "dir")
    (home / ".ssh").symlink_to(motd)
    before = _snapshot(motd)
    failure = _failure(lambda: agent.boot(c.settings("master"), c.clients("master", status="FAILURE"),
                                          echo=c.echo()))
    assert _snapshot(motd) == before
    assert re.search(r"ssh step failed: ~/\.ssh .* is a symbolic link: refused", failure), failure
