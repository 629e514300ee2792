"""node/system.py's seam: under a test root every command is recorded, never run; at root "/" a
command that cannot start or outlives its timeout is one AgentError line; and under pytest root "/"
refuses to run anything at all (these tests run as root: one that forgot its root could power the
machine off)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cfn_chainermn.errors import AgentError
from cfn_chainermn.node.system import PYTEST, System


def test_a_test_root_records_the_command_and_runs_nothing(tmp_path: Path) -> None:
    made = tmp_path / "made"
    assert System(tmp_path).run(["touch", str(made)]) == 0
    assert System(tmp_path).recorded() == [f"touch {made}"] and not made.exists()


def test_root_refuses_to_run_a_command_under_pytest(tmp_path: Path) -> None:
    made = tmp_path / "made"
    with pytest.raises(RuntimeError, match=r"refuses to run `touch .*` under pytest: give it a test root"):
        System("/").run(["touch", str(made)], check=False)
    assert not made.exists()


def test_a_command_that_cannot_start_is_an_agent_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A missing systemctl (or EPERM) is the same one line as a failed command, not an OSError."""
    monkeypatch.delenv(PYTEST)  # the guard off for this harmless command alone
    missing = str(tmp_path / "no-such-command")
    with pytest.raises(AgentError, match=rf"`{missing}` failed: \[Errno 2\] No such file or directory"):
        System("/").run([missing])


def test_a_command_past_its_timeout_is_an_agent_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PYTEST)
    with pytest.raises(AgentError, match=r"timed out after 0.5 seconds"):
        System("/").run([sys.executable, "-c", "import time; time.sleep(30)"], timeout=0.5)
