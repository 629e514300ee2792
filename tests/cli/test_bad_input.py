"""Bad input is one line naming the field and the fix, exit 2, before any lookup (issue 12, item 12).

Every command that takes a cluster NAME checks it first: a name no stack can have used to spend
20-33 s in AWS retries before 'does not exist'. The services handed in fail the test if a
command reaches for AWS or a cluster at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cfn_chainermn.cli import cli
from cfn_chainermn.cli.boundary import run_with_boundary
from cfn_chainermn.cli.services import Services

NAME_RULE = "is not a cluster (stack) name; use 1-128 letters, digits and hyphens, starting with a letter"


def _never(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("bad input reached AWS or a cluster lookup")


NO_LOOKUP = Services(connect=_never, resolve=_never)


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = run_with_boundary(cli, args, NO_LOOKUP)
    captured = capsys.readouterr()
    assert captured.out == ""
    return code, captured.err


@pytest.mark.parametrize("command", [
    "stack status", "stack watch", "stack outputs", "stack events", "stack delete",
    "stack scale --workers 2", "hostfile", "job list", "job logs", "job cancel", "ssh", "cluster check",
    "job submit -n 2",
])
@pytest.mark.parametrize("name", ["bad name", "9starts-with-a-digit", "x" * 129, "under_score", "-flag-like"])
def test_a_name_no_stack_can_have_is_refused_before_any_lookup(
        command: str, name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "train.py"
    script.write_text("print('hi')\n")
    after = {"job logs": ["j1"], "job cancel": ["j1"], "ssh": ["true"], "job submit -n 2": [str(script)]}
    args = [*command.split(), "--region", "us-east-1", "--", name, *after.get(command, [])]
    code, err = _run(args, capsys)
    assert code == 2, err
    assert err.count("\n") == 1 and f"{name!r} {NAME_RULE}" in err and "Traceback" not in err


@pytest.mark.parametrize("value", ["nan", "inf", "NaN"])
def test_hostfile_timeout_must_be_a_finite_number(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(["hostfile", "demo", "--wait", "2", f"--timeout={value}"], capsys)
    assert code == 2
    assert err.count("\n") == 1 and "'--timeout'" in err and "give a finite number" in err


def test_local_up_name_follows_the_same_rule(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(["local", "up", "--name", "a b"], capsys)
    assert code == 2 and "'--name'" in err and f"'a b' {NAME_RULE}" in err


def test_template_output_into_a_missing_folder_creates_nothing(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "no" / "such" / "t.yaml"
    code, err = _run(["template", "-o", str(target)], capsys)
    assert code == 2
    assert err == f"error: -o: folder {target.parent} does not exist; create it first or give a file in an " \
                  "existing folder\n"
    assert not (tmp_path / "no").exists()
