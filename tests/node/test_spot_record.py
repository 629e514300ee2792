"""What the Spot watch did for a notice (node/spot_record.py): kept root-only, read back by a
restarted watch for the same notice only, and never trusted when it cannot be read cleanly."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from cfn_chainermn.node.spot_record import Record

T1, T2 = "2026-12-02T21:00:00Z", "2026-12-09T08:00:00Z"
BOOT = "6b1e3c1a-boot"  # /proc/sys/kernel/random/boot_id


def _done(path: Path) -> Record:
    rec = Record(T1, BOOT, retracted=True, gone=True, told=["j-b", "j-a"], termed={"42:1000": 1.5e9},
                 settled=["42:1000"])
    rec.save(path)
    return rec


def test_a_record_comes_back_for_its_notice_and_is_root_only(tmp_path: Path) -> None:
    path = tmp_path / "spot.json"
    _done(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    back = Record.load(path, T1, BOOT)
    assert back == Record(T1, BOOT, retracted=True, gone=True, told=["j-a", "j-b"], termed={"42:1000": 1.5e9},
                          settled=["42:1000"], resumed=True)
    assert back.started() and back.words() == "readiness retracted, queue told, 2 job(s) told, 1 rank(s) sent SIGTERM"


def test_another_notice_starts_afresh(tmp_path: Path) -> None:
    """A stopped instance started again and warned again: nothing of the first notice holds."""
    path = tmp_path / "spot.json"
    _done(path)
    fresh = Record.load(path, T2, BOOT)
    assert fresh == Record(T2, BOOT) and not fresh.started() and fresh.words() == "nothing yet"
    assert Record.load(tmp_path / "none.json", T1, BOOT) == Record(T1, BOOT)


@pytest.mark.parametrize("text", [
    "{not json",
    json.dumps(["a list"]),
    json.dumps({"notice_time": T1, "retracted": "yes"}),
    json.dumps({"notice_time": T1, "told": "j-a"}),
    json.dumps({"notice_time": T1, "termed": ["42:1000"]}),
])
def test_a_damaged_record_counts_as_none(tmp_path: Path, text: str) -> None:
    """Acting twice (a second log line) beats not acting (a job left hanging)."""
    path = tmp_path / "spot.json"
    path.write_text(text)
    assert Record.load(path, T1, BOOT) == Record(T1, BOOT)


def test_a_link_in_its_place_is_not_followed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.json"
    _done(elsewhere)
    path = tmp_path / "spot.json"
    path.symlink_to(elsewhere)
    assert Record.load(path, T1, BOOT) == Record(T1, BOOT)
    Record(T1, BOOT, retracted=True).save(path)
    assert not path.is_symlink(), "replaced, not written through"
    assert Record.load(elsewhere, T1, BOOT).told == ["j-a", "j-b"]


def test_the_ranks_of_another_boot_are_not_kept(tmp_path: Path) -> None:
    """Pid and start time name one process for one boot only: after a reboot they may name
    another process of the user, which a resumed SIGKILL must not reach. The rest still holds."""
    path = tmp_path / "spot.json"
    _done(path)
    after = Record.load(path, T1, "another-boot")
    assert after == Record(T1, "another-boot", retracted=True, gone=True, told=["j-a", "j-b"], resumed=True)
    data = json.loads(path.read_text())
    del data["boot"]  # a record written before the boot was kept
    path.write_text(json.dumps(data))
    assert Record.load(path, T1, BOOT).termed == {}
