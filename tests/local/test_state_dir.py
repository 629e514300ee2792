"""`local up` touches only a state folder it made: a foreign folder is refused before any change."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
from pathlib import Path

import pytest
from localcluster import down, make_state_dir, pids_matching

from cfn_chainermn.cli import cli
from cfn_chainermn.cli.boundary import run_with_boundary
from cfn_chainermn.errors import ConfigError
from cfn_chainermn.local import lifecycle as local
from cfn_chainermn.local import places
from cfn_chainermn.local import state_dir as local_folder


def _up(state_dir: Path | str) -> int:
    return run_with_boundary(cli, ["local", "up", "--workers", "0", "--state-dir", str(state_dir)])


def test_up_refuses_a_non_empty_folder_it_did_not_make(capsys: pytest.CaptureFixture[str]) -> None:
    """E.g. `--state-dir ~` or `/`: clearing home/ there, or making it world-readable, would be a disaster."""
    state_dir = make_state_dir("cfnmn-foreign-")
    (state_dir / "home" / "me").mkdir(parents=True)
    (state_dir / "home" / "me" / "notes.txt").write_text("mine\n")
    (state_dir / "keep.txt").write_text("mine too\n")
    state_dir.chmod(0o751)
    try:
        rc = _up(state_dir)
        err = capsys.readouterr().err
        assert rc == 2, err
        assert err == (f"error: --state-dir: {state_dir} is not empty and holds no cfn-chainermn local cluster; "
                       "give a new or empty folder such as /tmp/cluster (nothing in it was changed)\n")
        assert (state_dir / "home" / "me" / "notes.txt").read_text() == "mine\n"
        assert sorted(p.name for p in state_dir.iterdir()) == ["home", "keep.txt"]
        assert stat.S_IMODE(state_dir.stat().st_mode) == 0o751
        assert not pids_matching(str(state_dir))
    finally:
        down(state_dir)
        shutil.rmtree(state_dir.parent, ignore_errors=True)


@pytest.mark.parametrize("under", ["/proc", "file"])
def test_a_state_dir_that_cannot_be_made_is_a_usage_error(under: str, capsys: pytest.CaptureFixture[str]) -> None:
    scratch = make_state_dir("cfnmn-unusable-").parent  # reachable by others, unlike pytest's tmp_path
    parent = Path(under) if under.startswith("/") else scratch / under
    if under == "file":
        parent.write_text("not a folder\n")
        parent.chmod(0o755)  # passes the searchable check; making a folder under it still fails
    state_dir = parent / "cfnmn-state"
    try:
        rc = _up(state_dir)
    finally:
        shutil.rmtree(scratch)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("error: --state-dir: ") and str(state_dir) in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not state_dir.exists()


@pytest.mark.slow
def test_up_keeps_the_mode_of_an_existing_folder_and_reuses_its_own_after_down() -> None:
    state_dir = make_state_dir("cfnmn-reuse-")
    state_dir.mkdir(mode=0o711)
    state_dir.chmod(0o711)  # searchable by the cluster user, yet not readable: not ours to widen
    try:
        assert _up(state_dir) == 0
        assert stat.S_IMODE(state_dir.stat().st_mode) == 0o711
        assert down(state_dir).returncode == 0
        (state_dir / "shared" / "result.txt").write_text("kept\n")
        outside = state_dir.parent / "outside.txt"
        outside.write_text("not the cluster's\n")
        if os.geteuid() == 0:
            # The last run's user may not be this run's (`chainer` taken meanwhile): its jobs/
            # would refuse every upload unless handed over. A link is not followed.
            (state_dir / "shared" / "jobs" / "old").mkdir(parents=True)
            (state_dir / "shared" / "jobs" / "old" / "link").symlink_to(outside)
            for path in ("jobs", "jobs/old", "jobs/old/link", "result.txt"):
                os.chown(state_dir / "shared" / path, 54321, 54321, follow_symlinks=False)
        # nodes/, home/, shared/ are left from the first run: still ours, so up clears and reuses it
        assert _up(state_dir) == 0
        assert (state_dir / "shared" / "result.txt").read_text() == "kept\n"
        if os.geteuid() == 0:
            user = json.loads((state_dir / "cluster.json").read_text())["user"]
            owner = (pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid)
            for path in ("jobs", "jobs/old", "jobs/old/link", "result.txt"):
                st = os.lstat(state_dir / "shared" / path)
                assert (st.st_uid, st.st_gid) == owner, path
            assert os.stat(outside).st_uid == 0
        assert stat.S_IMODE(state_dir.stat().st_mode) == 0o711
    finally:
        down(state_dir)
        shutil.rmtree(state_dir.parent, ignore_errors=True)


@pytest.mark.parametrize(("claimed", "ours"), [("self", True), ("other", False)])
def test_a_folder_an_older_version_left_is_ours_only_when_its_nodes_name_it(tmp_path: Path, claimed: str,
                                                                            ours: bool) -> None:
    """Before the owner mark, `down` left nodes/, home/, ... and no state file (an old `.demo/cluster`)."""
    root = tmp_path / "cluster"
    (root / "nodes" / "master").mkdir(parents=True)
    (root / "home").mkdir()
    named = root if claimed == "self" else tmp_path / "elsewhere"
    (root / "nodes" / "master" / "sshd_config").write_text(f"{local.MARKER} state={named}\nPort 1\n")
    assert local_folder.is_ours(root) is ours
    if not ours:
        with pytest.raises(ConfigError, match="holds no cfn-chainermn local cluster"):
            local_folder.refuse_foreign(root)


def test_the_advice_for_a_folder_out_of_reach_names_only_folders_in_reach(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """From a closed folder (a clone under /root), `./.local-cluster` would be out of reach too."""
    hidden = tmp_path / "private"
    hidden.mkdir(mode=0o700)
    monkeypatch.chdir(hidden)
    with pytest.raises(ConfigError) as caught:
        local_folder.check_searchable(hidden / "cluster")
    message = str(caught.value)
    assert message.startswith(f"--state-dir: {hidden} is not searchable by other users")
    advice = message.split(" there. ", 1)[1]
    words = [word.strip("(),`") for word in advice.split()]
    named = [Path(word) for word in words if word.startswith(("/", "./", ".local"))]
    assert named and "/tmp/cluster" in advice
    for folder in named:
        assert places.unsearchable(folder.resolve()) is None, (folder, message)
