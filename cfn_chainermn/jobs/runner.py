"""Jobs on the master: submit, attach, logs, list, cancel.

Every job lives in `<shared>/jobs/<job-id>/` (script, hostfile, log, exit code, the process
group id), so it can be followed or cancelled from any machine later. The job runs under
`setsid` in a process group of its own with its output going to the log: a client that goes
away cannot leave it half-dead. An attached client streams the log; a watchdog on the remote
side notices the channel closing (Ctrl-C, lost network) and cancels the whole group, so no
rank is orphaned. `--detach` simply skips the watchdog. A connection that goes silent without
closing, which sshd may not notice for a while, is given up by the client's keepalive
(cluster/keepalive.py); the client then cancels the attached job over a new connection.
"""

from __future__ import annotations

import contextlib
import posixpath
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cfn_chainermn.cluster.channel_io import LineSink, stream_lines
from cfn_chainermn.cluster.remote import Remote, transport_errors
from cfn_chainermn.errors import BusyError, NotStarted, RemoteError
from cfn_chainermn.jobs.folder import ADMITTED, BUSY, JOBS, LAUNCHED, NEVER, NEVER_RC, NEWS, NOTE, JobRef, Launch
from cfn_chainermn.jobs.scripts import inline

LAUNCH_FAILURE_MARKS = ("ORTE was unable to reliably start", "ssh: connect to host", "Host key verification failed")


class NoJob(RemoteError):
    """The cluster has no folder for that job id."""


def start(remote: Remote, launch: Launch, *, detach: bool, on_line: LineSink,
          on_started: Callable[[], None] | None = None, wait: bool = True,
          on_note: Callable[[str], None] | None = None) -> int:
    """Send the job and run it; attached: stream its log and return its exit code.

    `on_started` runs once the job folder is written and the queue takes over, before any job
    output; `on_note` gets the queue's news (`job JOB queued behind OTHER`). Without `wait`, a job
    whose nodes are not free at once is not started: BusyError. A detached job that has to wait
    returns 0 at once: it stays queued on the master. A job that never ran (its folder not
    written, its queue failed or was cancelled before it had nodes) is NotStarted, never an exit
    code that could be the job's own.
    """
    ref = launch.ref
    broken = transport_errors()
    chan = remote.open_command(launch.command("detach" if detach else "attach", wait=wait))
    before: list[str] = []  # the upload's own messages (mkdir's, say): for the error, not the job's output
    launched = admitted = False

    def route(line: str) -> None:
        nonlocal launched, admitted
        if not launched:
            launched = line == LAUNCHED
            if not launched:
                before.append(line)
            elif on_started is not None:
                on_started()
        elif not admitted:  # queue.sh's lines until the job has its nodes: news, or why it did not start
            admitted = line == ADMITTED
            if admitted:
                return
            if line.startswith(NEWS):
                if on_note is not None:
                    on_note(f"job {ref.job_id} {line[len(NOTE):]}")
            else:
                before.append(line.removeprefix(NOTE))
        elif detach:
            before.append(line)  # "started PID", or why not
        else:
            on_line(line)

    try:
        for chunk in launch.chunks():  # a local file that cannot be read raises here (ConfigError)
            try:
                chan.sendall(chunk)
            except broken:
                break  # the remote side stopped reading: it failed, and says why on the channel
        stream_lines(chan, route)
        rc = int(chan.recv_exit_status())
    except BaseException as exc:
        chan.close()
        if isinstance(exc, broken):
            raise _lost(remote, ref, str(exc) or type(exc).__name__, launched=launched, detach=detach) from exc
        # Ctrl-C: cancel explicitly too, in case the watchdog cannot run.
        with contextlib.suppress(Exception):  # best effort; the remote watchdog cancels too
            cancel(remote, ref)
        raise
    finally:
        chan.close()
    why = "; ".join(before)
    if not launched:
        raise NotStarted(f"job {ref.job_id} did not start: {why or 'no message'} (exit {rc} on {remote.host})")
    if not admitted and rc == BUSY and not wait:
        raise BusyError(f"job {ref.job_id} not started (--no-wait): {why or 'its nodes are busy'}; "
                        "`cfn-chainermn job list NAME` shows the jobs, or submit without --no-wait to queue it")
    if rc == -1:  # the channel closed without an exit status: sshd or the network went away
        raise _lost(remote, ref, remote.lost or "the session closed without an exit status", launched=True,
                    detach=detach)
    if not admitted and not (detach and rc == 0):  # detached, 0: queued, its own waiter starts it
        raise NotStarted(f"job {ref.job_id} did not start: {why or f'its queue on {remote.host} exited {rc}'}")
    if detach and rc != 0:
        raise NotStarted(f"job {ref.job_id} did not start: {why or 'no message'} (exit {rc} on {remote.host})")
    return rc


def _lost(remote: Remote, ref: JobRef, why: str, *, launched: bool, detach: bool) -> RemoteError:
    """The connection went while the job ran: cancel it over a new one if that works, and say which.

    Through a path that silently stopped forwarding, the master's sshd may not notice for a while
    (its ClientAliveInterval), so its watchdog would not cancel the job yet; a new connection can.
    A detached job is meant to outlive the client: it is only named.
    """
    when = f"while job {ref.job_id} ran" if launched else f"while sending job {ref.job_id}"
    if detach:
        return RemoteError(f"lost the connection to {remote.host} {when} ({why}); a detached job is not cancelled: "
                           "`cfn-chainermn job list NAME` shows whether it runs")
    try:
        with remote.again() as other:
            stopped = cancel(other, ref)
        fate = ("it was cancelled over a new connection" if stopped else
                "it had ended already" if launched else "it did not start")
    except NoJob:
        fate = "it did not start"
    except Exception as exc:  # the path is down for new connections too
        fate = (f"cancelling it over a new connection failed too ({exc}); the master cancels it when its sshd "
                f"notices the lost session, or run `cfn-chainermn job cancel NAME {ref.job_id}`")
    return RemoteError(f"lost the connection to {remote.host} {when} ({why}); {fate}")


def _no_job(ref: JobRef) -> NoJob:
    return NoJob(f"no job {ref.job_id} on the cluster (`cfn-chainermn job list NAME` shows them)")


def cancel(remote: Remote, ref: JobRef) -> bool:
    """Stop the job's whole process group, once no process of it is left: True. False when it had
    ended already (or its saved group id names another group now): nothing is signalled then.

    The client sends cancel.sh itself (not the job folder's copy), so a job started by an older
    version gets today's checks.
    """
    rc, out = remote.capture(inline("cancel.sh", ref.directory))
    if rc == 254:
        raise _no_job(ref)
    if rc not in (0, 3):
        raise RemoteError(f"cancel of {ref.job_id} failed (exit {rc}): {out.strip()}")
    return rc == 0


def logs(remote: Remote, ref: JobRef, *, follow: bool, on_line: LineSink) -> int:
    """Print the job's log; with `follow`, until it ends. Returns its exit code (0 while running).

    A job that never ran (cancelled while queued, its queue process gone) has no log: logs.sh
    says so in one line before anything else, and exits NEVER_RC: NotStarted, not an exit code.
    """
    cmd = inline("logs.sh", ref.directory, *(["follow"] if follow else []))
    held: list[str] = []  # a first line that looks like logs.sh's, until the next line or the end says whose
    first = True

    def route(line: str) -> None:
        nonlocal first
        if first and line.startswith(NEVER):
            held.append(line)
        else:
            for kept in held:  # the log's own first line after all, in its place
                on_line(kept)
            held.clear()
            on_line(line)
        first = False

    rc = remote.run(cmd, on_line=route)
    if rc == 254:
        raise _no_job(ref)
    if held and rc == NEVER_RC:
        raise NotStarted(f"job {ref.job_id} did not start: {held[0][len(NEVER):]}")
    for kept in held:
        on_line(kept)
    return rc


@dataclass(frozen=True)
class JobInfo:
    job_id: str
    state: str  # queued | running | exited | cancelled | lost
    exit_code: int | None
    summary: str


def list_jobs(remote: Remote, shared: str) -> list[JobInfo]:
    """The jobs of the cluster; list.sh ends each record with a NUL, as a summary may hold newlines."""
    out = remote.check(inline("list.sh", posixpath.join(shared, JOBS)))
    jobs = []
    for record in out.split("\0"):
        parts = record.split("\t", 3)
        if len(parts) != 4:
            continue
        rc = int(parts[2]) if parts[2].lstrip("-").isdigit() else None
        jobs.append(JobInfo(parts[0], parts[1], rc, parts[3]))
    return sorted(jobs, key=lambda j: j.job_id)


def one_line(text: str) -> str:
    """`text` for one row of a table: newlines, tabs and other control characters escaped (\\n)."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def looks_like_launch_failure(lines: Sequence[str]) -> bool:
    """mpiexec could not start its daemons (a node down, ssh refused): worth a node check."""
    return any(mark in line for line in lines for mark in LAUNCH_FAILURE_MARKS)


Tee = Callable[[str], None]


def tee(sink: LineSink, keep: list[str], limit: int = 200) -> Tee:
    """Pass lines on and remember the last `limit` of them."""

    def on_line(line: str) -> None:
        keep.append(line)
        if len(keep) > limit:
            del keep[0]
        sink(line)

    return on_line
