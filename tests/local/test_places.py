"""Where the venv and the default state folders go when the checkout is closed to other users, and
that nothing outside it is used unless it is ours alone."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from cfn_chainermn.errors import ConfigError
from cfn_chainermn.local import places

ROOT = Path(__file__).resolve().parents[2]


REAL_MOVED = places.moved


@pytest.fixture
def base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """BASE in a scratch folder, and this process taken for root (whose clusters run as another user)."""
    path = tmp_path / "var-lib" / "cfn-chainermn"
    path.parent.mkdir()
    monkeypatch.setattr(places, "BASE", path)
    monkeypatch.setattr(places, "moved", lambda folder: places.unsearchable(folder.resolve()) is not None)
    return path


def closed_checkout(tmp_path: Path) -> Path:
    checkout = tmp_path / "home" / "clone"
    checkout.mkdir(parents=True)
    (tmp_path / "home").chmod(0o700)
    return checkout


def test_an_open_folder_keeps_its_own_names(base: Path) -> None:
    open_ = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        open_.chmod(0o755)
        assert places.unsearchable(open_) is None
        assert places.place(open_, ".demo/cluster", create=True) == open_ / ".demo" / "cluster"
        assert not base.exists()
    finally:
        open_.rmdir()


def test_a_closed_checkout_moves_out_to_one_folder_of_its_own(tmp_path: Path, base: Path) -> None:
    checkout = closed_checkout(tmp_path)
    assert places.unsearchable(checkout) == tmp_path / "home"
    home = places.home_of(checkout)
    assert home.parent == base and len(home.name) == 12
    assert places.place(checkout, ".demo/cluster") == home / "demo" / "cluster"
    assert not base.exists()  # where only: nothing made
    assert places.place(checkout, ".local-cluster", create=True) == home / "local-cluster"
    for folder in (base, home):
        st = os.lstat(folder)
        assert (st.st_mode & 0o777, st.st_uid) == (0o755, os.geteuid())
    assert places.home_of(tmp_path / "other") != home


def test_the_default_state_dir_follows_the_working_folder(tmp_path: Path, base: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    checkout = closed_checkout(tmp_path)
    monkeypatch.chdir(checkout)
    assert places.default_state_dir() == places.home_of(checkout) / "local-cluster"
    monkeypatch.setattr(places, "moved", REAL_MOVED)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # an ordinary user's cluster runs as that user
    assert places.default_state_dir() == Path(".local-cluster")


@pytest.mark.parametrize("plant", ["link", "file", "writable"])
def test_a_folder_someone_else_could_have_planted_is_refused(tmp_path: Path, base: Path, plant: str) -> None:
    checkout = closed_checkout(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    if plant == "link":
        base.symlink_to(elsewhere)
    elif plant == "file":
        base.write_text("")
    else:
        base.mkdir()
        base.chmod(0o777)
    with pytest.raises(ConfigError, match=rf"{base} .*; Remove it \(`rm -rf {base}`\) and run again"):
        places.place(checkout, ".venv", create=True)
    assert list(elsewhere.iterdir()) == []


def test_a_folder_of_another_user_is_refused(tmp_path: Path, base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base.mkdir(mode=0o755)
    monkeypatch.setattr(os, "geteuid", lambda: os.getuid() + 4242)
    with pytest.raises(ConfigError, match=r"belongs to uid \d+, not to you"):
        places.check_private(base)


def test_interpreter_resolves_its_folder_not_the_venv_link(tmp_path: Path) -> None:
    venv_bin = tmp_path / "outside" / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").symlink_to(sys.executable)
    (tmp_path / ".venv").symlink_to(tmp_path / "outside" / "venv")
    assert places.interpreter(str(tmp_path / ".venv" / "bin" / "python")) == str(venv_bin / "python")


def test_link_venv_replaces_a_venv_inside_and_remove_takes_it_all(tmp_path: Path, base: Path) -> None:
    checkout = closed_checkout(tmp_path)
    (checkout / ".venv" / "bin").mkdir(parents=True)  # made here by an earlier `make install`
    note = places.link_venv(checkout / ".venv")
    target = places.home_of(checkout) / "venv"
    assert (checkout / ".venv").resolve() == target and target.is_dir()
    assert note.startswith(f"removed {checkout / '.venv'}") and str(tmp_path / "home") in note
    assert places.link_venv(checkout / ".venv") == ""  # again: nothing to do
    assert places.remove_home(checkout) == f"removed {places.home_of(checkout)}"
    assert not base.exists()


def test_the_makefile_runs_it_with_the_system_python() -> None:
    """Before any venv exists: standard library only, and an open folder keeps .venv."""
    res = subprocess.run(["/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable, "-I", "-c",
                          "import sys; sys.path.insert(0, '.'); from cfn_chainermn.local.places import main; "
                          "sys.exit(main(['where', '.venv']))"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    expected = ".venv" if not places.moved(ROOT) else str(places.home_of(ROOT) / "venv")
    assert res.stdout == expected + "\n"
