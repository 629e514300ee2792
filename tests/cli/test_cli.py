"""The CLI's error boundary, exit codes, and the promise that `--help` imports nothing heavy."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from cfn_chainermn import __version__
from cfn_chainermn.cli import COMMANDS, cli
from cfn_chainermn.cli.boundary import run_with_boundary, state
from cfn_chainermn.errors import AwsError, ConfigError, StackError

HEAVY = ("boto3", "botocore", "troposphere", "paramiko", "jinja2", "cfnlint", "awacs")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_with_boundary(cli, ["--version"]) == 0
    assert __version__ in capsys.readouterr().out


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_with_boundary(cli, ["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: No such command 'frobnicate'")
    assert len(err.strip().splitlines()) == 1


def _command(exc: Exception) -> click.Command:
    @click.command()
    def boom() -> None:
        raise exc

    return boom


@pytest.mark.parametrize(
    ("exc", "code", "line"),
    [
        (ConfigError(["workers: bad; fix it", "name: bad; fix it"]), 2, "error: workers: bad; fix it"),
        (StackError("stack demo: ROLLBACK_COMPLETE"), 3, "error: stack demo: ROLLBACK_COMPLETE"),
        (AwsError("AccessDenied: no"), 1, "error: AccessDenied: no"),
        (KeyboardInterrupt(), 130, "interrupted"),
    ],
)
def test_errors_become_lines_and_codes(
    exc: Exception, code: int, line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_with_boundary(_command(exc), []) == code
    err = capsys.readouterr().err
    assert next(ln for ln in err.splitlines() if ln) == line
    assert "Traceback" not in err


def test_botocore_credentials_error_is_clean(capsys: pytest.CaptureFixture[str]) -> None:
    from botocore.exceptions import NoCredentialsError

    assert run_with_boundary(_command(NoCredentialsError()), []) == 2
    assert "no AWS credentials found" in capsys.readouterr().err


def test_unexpected_errors_are_not_swallowed() -> None:
    with pytest.raises(ZeroDivisionError):
        run_with_boundary(_command(ZeroDivisionError()), [])


def test_debug_reraises() -> None:
    state.debug = True
    with pytest.raises(StackError):
        run_with_boundary(_command(StackError("x")), [])


def test_main_exit_code_and_debug_traceback() -> None:
    bad = [sys.executable, "-m", "cfn_chainermn", "template", "--workers", "-1"]
    plain = subprocess.run(bad, capture_output=True, text=True, timeout=60)
    assert plain.returncode == 2
    assert plain.stderr.startswith("error: workers: -1 is out of range")
    assert "Traceback" not in plain.stderr
    debug = subprocess.run([*bad[:3], "--debug", *bad[3:]], capture_output=True, text=True, timeout=60)
    assert "Traceback" in debug.stderr and "ConfigError" in debug.stderr


def test_help_of_every_command_imports_nothing_heavy() -> None:
    """`--help` must stay fast: heavy libraries load inside commands, not at import."""
    script = f"""
import sys
from cfn_chainermn.cli import cli
from cfn_chainermn.cli.boundary import run_with_boundary
for name in {sorted(COMMANDS)!r}:
    assert run_with_boundary(cli, [name, "--help"]) == 0, name
heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)
print("HEAVY=" + ",".join(heavy))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "HEAVY=", out.stdout[-500:]


def test_debug_is_a_leading_option_only() -> None:
    from cfn_chainermn.cli import _leading_debug

    assert _leading_debug(["--debug", "stack", "list"])
    assert not _leading_debug(["job", "submit", "local", "-n", "2", "t.py", "--", "--debug"])
    assert not _leading_debug(["-h", "--", "--debug"])
