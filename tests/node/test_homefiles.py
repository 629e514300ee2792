"""HomeFiles itself: what it refuses besides links, and that a refusal changes nothing."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from cfn_chainermn.errors import AgentError
from cfn_chainermn.node.homefiles import HomeFiles


def test_write_creates_folders_and_skips_unchanged(tmp_path: Path) -> None:
    files = HomeFiles(tmp_path)
    assert files.write("a/b/c.txt", "x\n", 0o640, folder_mode=0o700)
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "a/b/c.txt").stat().st_mode) == 0o640
    assert not files.write("a/b/c.txt", "x\n", 0o640)
    assert files.write("a/b/c.txt", "x\n", 0o644)  # a mode change is a change
    assert files.read("a/b/c.txt") == b"x\n" and files.read("a/missing") is None and files.read("nope/x") is None
    assert files.read_text("nope") == ""
    assert sorted(p.name for p in (tmp_path / "a/b").iterdir()) == ["c.txt"]  # no temp file left


def test_a_huge_file_is_never_loaded_read_refuses_it_and_write_replaces_it(tmp_path: Path) -> None:
    """The user can grow their own files (`truncate -s 50G ~/hostfile`); root reads none of it."""
    huge = tmp_path / "hostfile"
    with huge.open("wb") as f:
        f.truncate(50 << 30)  # sparse: 50 GB that cost no disk
    files = HomeFiles(tmp_path)
    with pytest.raises(AgentError, match=r"~/hostfile in .* is larger than 4194304 bytes"):
        files.read("hostfile")
    assert files.write("hostfile", "", 0o644)  # even empty content replaces it: it was not compared
    assert huge.stat().st_size == 0


def test_hard_link_and_fifo_are_refused(tmp_path: Path) -> None:
    """A second name of someone else's file is not read; a FIFO does not hang the agent."""
    home = tmp_path / "home"
    home.mkdir()
    other = tmp_path / "shadow"
    other.write_text("secret\n")
    os.link(other, home / "hostfile")
    os.mkfifo(home / "known_hosts")
    files = HomeFiles(home)
    with pytest.raises(AgentError, match="a file with 2 names"):
        files.write("hostfile", "x\n", 0o644)
    done = threading.Event()

    def read() -> None:
        with pytest.raises(AgentError, match="not a plain file"):
            files.read("known_hosts")
        done.set()

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(30)  # a bound on a hang only
    assert done.is_set()
    assert other.read_text() == "secret\n"


def test_a_linked_home_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "home").symlink_to(real)
    with pytest.raises(AgentError, match="is a symbolic link or not a folder: refused"):
        HomeFiles(tmp_path / "home").write("hostfile", "x", 0o644)
    assert list(real.iterdir()) == []


def test_file_where_a_folder_should_be_is_refused(tmp_path: Path) -> None:
    (tmp_path / ".ssh").write_text("not a folder\n")
    with pytest.raises(AgentError, match=r"~/\.ssh in .* is not a plain folder: refused"):
        HomeFiles(tmp_path).write(".ssh/known_hosts", "x", 0o644)
    assert (tmp_path / ".ssh").read_text() == "not a folder\n"
