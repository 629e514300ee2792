"""The shell scripts of jobs, kept as shell in jobs/sh/ and read from the package once, when needed.

Four are written into every job folder, so a job started by one version of the tool can be
followed and cancelled by another:

- queue.sh waits for the nodes the job needs (a FIFO queue on the master, under a flock): it
  writes the job's hostfile when its turn comes and nodes are free, then becomes run.sh.

- run.sh starts cmd.sh in a session (process group) of its own; `run.sh attach` streams the
  log and runs cancel.sh when the client's channel closes before the job ends.
- cmd.sh is the mpiexec line: the one script rendered, its `@COMMAND@` replaced by the argv.
- cancel.sh stops mpiexec first (it stops its remote daemons and ranks cleanly), then the
  group, then KILLs what is left; only a job that has not ended and whose group is still its
  own. `job cancel` sends today's copy inline rather than running the folder's.

The others are the command of an exec channel themselves (`inline`), their arguments set
first: submit.sh writes the job folder and execs queue.sh, logs.sh prints or follows a log,
list.sh lists the jobs. Nothing of ours has to be installed on the master. idle.sh enters the
jobs folder for idle shutdown's listing (node/idle_probe.py sends it, list.sh after it).
"""

from __future__ import annotations

import functools
import shlex
from collections.abc import Sequence

COMMAND = "@COMMAND@"  # cmd.sh's placeholder: no shell syntax, so nothing else in the file can match it


@functools.cache
def text(name: str) -> str:
    """The text of jobs/sh/`name`; importlib.resources only here, so importing jobs costs nothing."""
    from importlib.resources import files

    return (files("cfn_chainermn.jobs") / "sh" / name).read_text(encoding="utf-8")


def cmd_script(argv: Sequence[str]) -> str:
    """cmd.sh of a job: runs `argv` (mpiexec) with its output in the folder's log."""
    return text("cmd.sh").replace(COMMAND, shlex.join(argv), 1)


# scripts that ask group.sh whether a job's process group (or queue process) is still its own
USES_GROUP = frozenset({"cancel.sh", "list.sh", "logs.sh", "queue.sh"})


def script(name: str) -> str:
    """Script `name` whole: group.sh's functions in front where it uses them (a job folder's
    cancel.sh is run alone there by run.sh's watchdog)."""
    body = text(name)
    if name not in USES_GROUP:
        return body
    shebang, _, rest = body.partition("\n")
    lib = text("group.sh").partition("\n")[2]
    return f"{shebang}\n{lib}{rest}"


def inline(name: str, *args: str) -> str:
    """Script `name` as one shell command: `set --` gives it its arguments, as `sh name ARGS` would."""
    return f"set -- {shlex.join(args)}\n{script(name)}"
