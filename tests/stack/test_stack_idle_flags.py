"""Idle shutdown's flags on `stack create` and `stack update`: bad input is one line, exit 2,
before any AWS call (the Stubber has nothing queued, so a call would fail the test)."""

from __future__ import annotations

from typing import Any

import pytest
from stack_helpers import FLAGS, NAME


@pytest.mark.parametrize(("flags", "line"), [
    (["--idle-minutes", "0"], "idle.minutes: '0' is not allowed; give whole minutes from 1 to 9999, or off"),
    (["--idle-minutes", "-5"], "idle.minutes: '-5' is not allowed; give whole minutes from 1 to 9999, or off"),
    (["--max-hours", "0"], "idle.max_hours: '0' is not allowed; give whole hours from 1 to 9999, or off"),
    (["--max-hours", "169"], "idle.max_hours: 169 hours is over a week (168); give --yes if you mean it, or "
                             "fewer hours"),
])
@pytest.mark.parametrize("command", ["create", "update"])
def test_bad_idle_limits_are_one_line_and_exit_2_before_any_aws_call(
        stubbed: Any, run_cli: Any, command: str, flags: list[str], line: str) -> None:
    result = run_cli("stack", command, NAME, *(FLAGS if command == "create" else []), *flags)
    assert result.code == 2
    assert line in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert "Traceback" not in result.err


def test_idle_action_outside_its_choices_is_refused_by_the_flag(stubbed: Any, run_cli: Any) -> None:
    result = run_cli("stack", "create", NAME, *FLAGS, "--idle-minutes", "30", "--idle-action", "hibernate")
    assert result.code == 2
    assert "--idle-action" in result.err and "hibernate" in result.err
