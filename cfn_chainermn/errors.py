"""One exception family, so the CLI has a single error boundary.

Each subclass carries the data a caller needs; the CLI maps the class to an exit code.
"""

from __future__ import annotations

from collections.abc import Sequence


class CfnChainermnError(Exception):
    """Base of every error this package raises on purpose."""

    exit_code = 1


class ConfigError(CfnChainermnError):
    """Bad configuration or usage: every problem found, each naming the field and the fix."""

    exit_code = 2

    def __init__(self, problems: Sequence[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class AwsError(CfnChainermnError):
    """An AWS call failed; `message` holds the root cause in words."""

    def __init__(self, message: str, *, code: str = "", operation: str = "") -> None:
        self.code = code
        self.operation = operation
        super().__init__(message)


class StackError(CfnChainermnError):
    """A stack operation ended badly (rollback, delete failure, signal timeout)."""

    exit_code = 3


class PreflightError(CfnChainermnError):
    """The account or region cannot hold the cluster as configured; nothing was created."""

    exit_code = 4


class RemoteError(CfnChainermnError):
    """SSH to a node failed (unreachable, auth refused, host key mismatch)."""

    exit_code = 5


class RemoteCommandError(RemoteError):
    """A remote command exited non-zero."""

    def __init__(self, command: str, returncode: int, stderr: str = "") -> None:
        self.command = command
        self.returncode = returncode
        self.stderr = stderr
        detail = f": {stderr.strip().splitlines()[-1]}" if stderr.strip() else ""
        super().__init__(f"remote command exited {returncode}{detail}")


class BusyError(CfnChainermnError):
    """`job submit --no-wait`: the nodes the job needs are held or queued for; nothing ran.

    75 is sysexits' EX_TEMPFAIL (try again later); a job's own exit code can be any byte, so no
    code is free of clashes, but this one is of no other failure of ours.
    """

    exit_code = 75


class NotStarted(RemoteError):
    """A job that never ran: the master could not write its folder, its queue failed, or it was
    cancelled (or its client went away) while it waited. Nothing of it ran.

    125 is what coreutils' env, nohup and timeout exit with when they fail themselves rather than
    the command they run (coreutils manual, "Exit status"; nohup(1): "125 if the nohup command
    itself fails"): a job's own code can be any byte, so none is free of clashes, but mpiexec and
    Python exit with this one rarely; the `job ID did not start: REASON` line tells them apart.
    """

    exit_code = 125


class AgentError(CfnChainermnError):
    """A node-agent step failed; the message is the reason signalled to CloudFormation."""


class AmiError(CfnChainermnError):
    """Rendering, validating or building the AMI recipe failed."""
