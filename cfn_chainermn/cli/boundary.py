"""The single error boundary: expected failures become one line and an exit code.

`--debug` re-raises so the traceback is there when someone needs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

from cfn_chainermn.errors import CfnChainermnError, ConfigError

if TYPE_CHECKING:
    from cfn_chainermn.cli.services import Services

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


@dataclass
class _State:
    debug: bool = False


state = _State()


def error(message: str) -> None:
    """Print one error line per line of `message` on stderr."""
    for line in message.splitlines() or [""]:
        click.echo(f"error: {line}", err=True)


def _botocore_message(exc: Exception) -> tuple[str, int] | None:
    """Credential and endpoint problems that can surface from any AWS call."""
    try:
        from botocore import exceptions as bexc
    except ImportError:  # pragma: no cover - boto3 is a dependency
        return None
    if isinstance(exc, bexc.NoCredentialsError):
        return ("no AWS credentials found; run `aws configure`, set AWS_PROFILE, or pass --profile", EXIT_USAGE)
    if isinstance(exc, bexc.ProfileNotFound):
        return (f"{exc}; check --profile / AWS_PROFILE against ~/.aws/config", EXIT_USAGE)
    if isinstance(exc, bexc.NoRegionError):
        return ("no AWS region set; pass --region or set AWS_REGION", EXIT_USAGE)
    if isinstance(exc, bexc.EndpointConnectionError):
        return (f"cannot reach AWS: {exc}", EXIT_ERROR)
    from cfn_chainermn.aws import botocore_errors, failure_of

    if isinstance(exc, botocore_errors()):
        return (failure_of(exc).explained(), EXIT_ERROR)
    return None


def run_with_boundary(command: click.Command, args: list[str], services: Services | None = None) -> int:
    """Run a click command; map every expected failure to a message and an exit code.

    `services` (the AWS factory, the cluster resolver) reach every command as click's context object.
    """
    try:
        result = command.main(args=args, prog_name="cfn-chainermn", standalone_mode=False, obj=services)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.UsageError as exc:
        if state.debug:
            raise
        hint = ""
        if exc.ctx is not None:
            hint = f" (see `{exc.ctx.command_path} --help`)"
        error(f"{exc.format_message()}{hint}")
        return EXIT_USAGE
    except click.ClickException as exc:
        if state.debug:
            raise
        error(exc.format_message())
        return exc.exit_code
    except (click.Abort, KeyboardInterrupt):
        if state.debug:
            raise
        click.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    except ConfigError as exc:
        if state.debug:
            raise
        error(str(exc))
        return EXIT_USAGE
    except CfnChainermnError as exc:
        if state.debug:
            raise
        error(str(exc))
        return exc.exit_code
    except Exception as exc:
        if state.debug:
            raise
        mapped = _botocore_message(exc)
        if mapped is None:
            raise
        error(mapped[0])
        return mapped[1]
    if isinstance(result, int):
        return result
    return EXIT_OK
