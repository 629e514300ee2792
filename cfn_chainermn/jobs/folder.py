"""A job's folder on the shared mount, and how it travels: one exec channel, no SFTP.

`<shared>/jobs/<job-id>/` holds the user's script and `--files`, the nodes ready at submit, the
runner scripts (jobs/sh/, see scripts.py) and later the hostfile of the nodes the queue gave it,
the log and exit code. The command that starts the job is sh/submit.sh itself: it writes this
folder, then execs queue.sh, which execs run.sh when the job's turn comes. Our own small text
files ride in its arguments; the user's files come on its stdin as a stream of `SIZE MODE
NAME` lines each followed by SIZE bytes, ended by `END`. The command's length does not grow
with the number of files, and nothing is held in memory here: files are read as they are sent.
The values of `--secret-env` come last in that stream, so they reach mpiexec's environment
without being written anywhere (sh/submit.sh exports them).
"""

from __future__ import annotations

import os
import posixpath
import shlex
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cfn_chainermn.errors import ConfigError, RemoteError
from cfn_chainermn.jobs import mpi, scripts

JOBS = "jobs"
RESERVED = frozenset({"cmd.sh", "run.sh", "cancel.sh", "queue.sh", "hostfile", "nodes", "want", "queued",
                      "queue.log", "log", "summary", "pgid", "pgid.start", "mpiexec.pid", "exit_code",
                      "exit_code.tmp", "cancelled"})
NOTE = "cfn-chainermn: "  # the master's lines for the client (not the job's), up to ADMITTED
LAUNCHED = NOTE + "job folder written"  # submit.sh's line between the upload's messages and the queue's
ADMITTED = NOTE + "admitted"  # queue.sh's line once the job has its nodes: the lines after it are the job's
NEWS = NOTE + "queued"  # queue.sh's news while the job waits; its other lines before ADMITTED say why it did not start
NEVER = NOTE + "did not start: "  # logs.sh's one line, exit NEVER_RC, for a job that never ran and never will
NEVER_RC = 253
BUSY = 75  # queue.sh's exit with nowait when the job cannot start at once (sysexits' EX_TEMPFAIL)
INLINE_LIMIT = 48 * 1024  # our own text files up to this much ride in the command (a shell arg takes 128 KiB)
MAX_FILES = 10_000
MAX_BYTES = 1 << 30
CHUNK = 1 << 20


@dataclass(frozen=True)
class JobRef:
    job_id: str
    directory: str


def new_job_id(now: float | None = None) -> str:
    """Sortable and unique: UTC time plus 4 random hex digits."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now if now is not None else time.time()))
    return f"{stamp}-{os.urandom(2).hex()}"  # what secrets.token_hex does, without importing it


def job_dir(shared: str, job_id: str) -> str:
    """The folder of job `job_id`; an id that could escape `<shared>/jobs/` is a usage error."""
    if not job_id or "/" in job_id or job_id.startswith("."):
        raise ConfigError(f"JOB: {job_id!r} is not a job id; `cfn-chainermn job list NAME` shows them")
    return posixpath.join(shared, JOBS, job_id)


@dataclass(frozen=True)
class Upload:
    """One file for the job folder: its name there, its size, and where its bytes come from."""

    name: str
    size: int
    executable: bool
    source: Path | bytes


@dataclass(frozen=True)
class Launch:
    """A job ready to send: its folder, the mpiexec job with remote paths, the folder's files."""

    ref: JobRef
    job: mpi.Job
    written: tuple[tuple[str, str], ...]  # our text files: name, text (in the command)
    sent: tuple[Upload, ...]  # on stdin
    # on stdin after the files: NAME, value; never a file, and never in a repr (a log, a test report)
    secrets: tuple[tuple[str, bytes], ...] = field(default=(), repr=False)

    def command(self, mode: str, *, wait: bool = True) -> str:
        """One shell command that writes the folder and execs queue.sh (`attach`|`detach`); without
        `wait`, queue.sh exits BUSY when the job's nodes are not free at once."""
        pairs = [word for name, text in self.written for word in (name, text)]  # submit.sh's NAME TEXT arguments
        return scripts.inline("submit.sh", self.ref.directory, self.ref.job_id, mode, "wait" if wait else "nowait",
                              *pairs)

    def chunks(self) -> Iterator[bytes]:
        """The stdin stream: each file's header and bytes, the secrets (`SIZE e NAME`), then END.

        Small pieces are gathered up to CHUNK, so a one-script job is one write to the channel.
        """
        buf = bytearray()
        for up in self.sent:
            buf += f"{up.size} {'x' if up.executable else '-'} {up.name}\n".encode()
            for data in _pieces(up):
                buf += data
                if len(buf) >= CHUNK:
                    yield bytes(buf)
                    buf.clear()
        for name, value in self.secrets:
            buf += f"{len(value)} e {name}\n".encode() + value
        yield bytes(buf + b"END\n")

    def payload(self) -> bytes:
        return b"".join(self.chunks())


def prepare(*, shared: str, script: Path, files: Sequence[Path], hostfile_text: str, job: mpi.Job,
            net: mpi.Network, job_id: str | None = None, secrets: Sequence[tuple[str, str]] = ()) -> Launch:
    """Check the files and build the job folder's content; nothing touches the cluster yet.

    `secrets` (NAME, value) are forwarded to every rank like `job.env`, their values sent on stdin.
    """
    if not script.is_file():
        raise ConfigError(f"SCRIPT: {script} is not a file")
    names: set[str] = set()
    sent: list[Upload] = []
    for flag, path in [("SCRIPT", script), *(("--files", f) for f in files)]:
        # the name as given (a link keeps its own name); "." or ".." stand for the folder they name
        top = path.name if path.name not in ("", ".", "..") else path.resolve().name
        if top in RESERVED or top in names:
            raise ConfigError(f"{flag}: {top!r} clashes with another file of the job folder; rename it")
        names.add(top)
        sent += [_upload(flag, name, p) for name, p in _contents(flag, path, top)]
    total = sum(u.size for u in sent)
    if len(sent) > MAX_FILES or total > MAX_BYTES:
        raise ConfigError(f"--files: {len(sent):,} files, {total / (1 << 20):,.0f} MiB is more than a job folder "
                          f"takes ({MAX_FILES:,} files, {MAX_BYTES >> 20:,} MiB); copy data sets to the shared "
                          "mount once (e.g. aws s3 sync on the master) and pass their path as an argument")
    job_id = job_id or new_job_id()
    ref = JobRef(job_id, job_dir(shared, job_id))
    hostfile = posixpath.join(ref.directory, "hostfile") if hostfile_text else None
    full = mpi.Job(program=posixpath.join(ref.directory, script.name), np=job.np, per_node=job.per_node,
                   args=job.args, env=job.env, python=job.python, hostfile=hostfile, workdir=ref.directory,
                   secret_names=tuple(name for name, _ in secrets))
    argv = mpi.mpiexec_argv(full, net)
    summary = f"np={job.np} {script.name} {shlex.join(job.args)}".strip()
    ours = [("run.sh", scripts.text("run.sh")), ("cancel.sh", scripts.script("cancel.sh")),
            ("queue.sh", scripts.script("queue.sh")), ("cmd.sh", scripts.cmd_script(argv)),
            ("summary", f"{summary}\n"), ("want", f"{job.np} {job.per_node or 0}\n")]
    if hostfile:  # the nodes ready now; queue.sh writes `hostfile` from those the job gets
        ours.append(("nodes", hostfile_text))
    written: list[tuple[str, str]] = []
    room = INLINE_LIMIT
    for name, text in ours:  # a huge hostfile or argument list goes on stdin instead
        data = text.encode()
        quoted = len(shlex.quote(text).encode())  # what it takes in the command: quotes can grow 5x
        if quoted <= room:
            written.append((name, text))
            room -= quoted
        else:
            sent.append(Upload(name, len(data), False, data))
    return Launch(ref, full, tuple(written), tuple(sent),
                  tuple((name, value.encode("utf-8", "surrogateescape")) for name, value in secrets))


def _pieces(up: Upload) -> Iterator[bytes]:
    """A file's bytes, exactly `up.size` of them, read a CHUNK at a time."""
    if isinstance(up.source, bytes):
        yield up.source
        return
    left = up.size
    try:
        with up.source.open("rb") as fh:
            while left:
                data = fh.read(min(CHUNK, left))
                if not data:
                    raise RemoteError(f"{up.source} shrank while it was being sent; submit again")
                left -= len(data)
                yield data
    except OSError as exc:
        raise ConfigError(f"--files: cannot read {up.source} ({exc.strerror or exc}); the job was not "
                          "started") from exc


def _upload(flag: str, name: str, path: Path) -> Upload:
    if "\n" in name or "\r" in name:
        raise ConfigError(f"{flag}: {name!r} has a line break in its name; rename it")
    try:
        name.encode()
    except UnicodeEncodeError:
        raise ConfigError(f"{flag}: {name!r} is not a UTF-8 name; rename it") from None
    try:
        return Upload(name, path.stat().st_size, os.access(path, os.X_OK), path)
    except OSError as exc:
        raise ConfigError(f"{flag}: cannot read {path} ({exc.strerror or exc})") from exc


def _contents(flag: str, path: Path, top: str) -> list[tuple[str, Path]]:
    """(name in the job folder, local file): a file as itself, a folder with all it holds.

    Hidden entries (.git, .venv, ...) and __pycache__ stay behind; links to folders are not
    followed (no loops), links to files are copied as files.
    """
    if path.is_file():
        return [(top, path)]
    if not path.is_dir():
        raise ConfigError(f"{flag}: {path} is not a file or folder")
    out = []
    for folder, dirs, found in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
        rel = Path(folder).relative_to(path).parts
        out += [(posixpath.join(top, *rel, f), Path(folder, f)) for f in sorted(found)
                if not f.startswith(".") and Path(folder, f).is_file()]
    return out
