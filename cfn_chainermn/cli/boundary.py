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
        from cfn_chainermn.aws import error_of  # botocore's failures: the one path to words (aws.py)

        mapped = error_of(exc)
        if mapped is None:
            raise
        error(str(mapped))
        return mapped.exit_code  # ConfigError (the setup): 2
    if isinstance(result, int):
        return result
    return EXIT_OK
