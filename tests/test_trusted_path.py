"""trusted_path: the rule for a folder on the way, and what the walk says when it cannot go on.

Who may own and write the folders is each caller's (tests/local/test_state_trust.py,
tests/node/test_mount_path.py); here is what they share."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cfn_chainermn import trusted_path


def _status(mode: int, uid: int) -> os.stat_result:
    return os.stat_result((stat.S_IFDIR | mode, 1, 1, 2, uid, 0, 4096, 0, 0, 0))


@pytest.mark.parametrize("mode,uid,sticky_ok,problem", [
    (0o755, 0, False, None),
    (0o700, os.geteuid(), False, None),  # our own
    (0o755, 65534, False, "owner"),
    (0o775, 0, False, "writable"),  # a group's members
    (0o757, 0, True, "writable"),  # not sticky
    (0o1777, 0, False, "writable"),  # anyone may create the next name first
    (0o1777, 0, True, None),  # but cannot rename what is ours: where the caller allows it
    (0o1777, 65534, True, "owner"),
])
def test_a_folder_is_foreign_when_someone_else_owns_it_or_may_write_it(
        mode: int, uid: int, sticky_ok: bool, problem: str | None) -> None:
    if uid == 65534 and os.geteuid() == 65534:
        pytest.skip("running as nobody")
    assert trusted_path.foreign(_status(mode, uid), sticky_ok=sticky_ok) == problem


def test_the_walk_reports_what_stands_in_a_folder_s_place_and_makes_nothing_past_it(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder\n")
    (tmp_path / "link").symlink_to(tmp_path)
    seen: list[Path] = []

    def check(st: os.stat_result, path: Path) -> None:
        seen.append(path)

    for name, link in (("file", False), ("link", True)):
        with pytest.raises(trusted_path.NotAFolder) as caught:
            trusted_path.open_walked(Path(f"/{name}/below"), check, create=True, top=tmp_path)
        assert caught.value.path == Path(f"/{name}") and caught.value.link is link
        assert caught.value.strerror == ("a symbolic link" if link else "not a folder")
    assert seen == [Path("/"), Path("/")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "link"]


def test_a_missing_folder_is_none_unless_made_and_then_it_gets_its_mode_once_checked(tmp_path: Path) -> None:
    modes: dict[Path, int] = {}

    def check(st: os.stat_result, path: Path) -> None:
        modes[path] = stat.S_IMODE(st.st_mode)

    assert trusted_path.open_walked(Path("/a/b"), check, top=tmp_path) is None
    fd = trusted_path.open_walked(Path("/a/b"), check, create=True, mode=0o751, top=tmp_path)
    assert fd is not None
    os.close(fd)
    assert modes[Path("/a")] == modes[Path("/a/b")] == 0o700  # as checked: private until then
    assert stat.S_IMODE((tmp_path / "a/b").stat().st_mode) == 0o751
    for bad in ("a/b", "/a/../b"):
        with pytest.raises(ValueError, match="not an absolute plain path"):
            trusted_path.open_walked(Path(bad), check, top=tmp_path)
