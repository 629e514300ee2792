"""The Spot watch's steps on the shared folder, in a thread of their own, waited for SHARED_WAIT_S.

Steps 2 and 3 of a notice (spot.py's docstring: the queue's gone entry, each running job's line)
read and write `<mount>/jobs` (spot_jobs.py), which on AWS is EFS mounted `hard`: a server
that stops answering leaves the call waiting until it answers again ("NFS requests are
retried indefinitely", nfs(5) under "soft / hard"), in a wait the watch cannot cut short
from Python. Run before the ranks' signals, they would hold the signals for as long, and the
job would hang instead of failing fast. So they run in a thread (spot_attempt.py) that the watch
waits for SHARED_WAIT_S at most: with EFS answering, both files are written before any rank is
signalled, as cmd.sh needs (it reads the job's line when mpiexec returns); without, the ranks
are signalled anyway, and the entry and lines are written whenever the folder answers again
(cmd.sh, on the same EFS, is then waiting for it too). While one run is stuck no other starts:
the next polls say how long the folder has not answered and signal the ranks at once.

The thread returns what it did (Told) and the watch records it: the record (spot_record.py) is
only ever changed by the watch's own thread. A run's outcome is recorded whenever it is taken in,
the watch's close included (else a restarted watch would repeat those writes), and only for the
notice it was started for: a run of an earlier notice that answers late counts for none after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cfn_chainermn.errors import CfnChainermnError
from cfn_chainermn.jobs.folder import JOBS
from cfn_chainermn.node import spot_jobs
from cfn_chainermn.node.homefiles import HomeFiles
from cfn_chainermn.node.spot_attempt import Attempt, words

SHARED_WAIT_S = 5.0  # EFS answers these few calls in well under a second; one AWS poll interval at most


@dataclass(frozen=True)
class Todo:
    """What one run is to do for the notice recorded as `notice` (spot.record_key): the queue's
    entry (None once written) and the lines of the running jobs holding `address` that have none
    yet (`told`: those that have)."""

    notice: str
    files: HomeFiles
    address: str
    gone: str | None
    line: str
    told: frozenset[str]


@dataclass
class Told:
    """What a run for `notice` did: the entry written, the jobs given their line, in words;
    `step`, what it is doing now (read by the watch while the run is stuck)."""

    notice: str
    gone: bool = False
    jobs: list[str] = field(default_factory=list)
    words: list[str] = field(default_factory=list)
    step: str = "starting"


def tell(todo: Todo, told: Told) -> Told:
    """The entry, then each running job's line; each error its own, tried again at the next run."""
    if todo.gone is not None:
        told.step = f"writing {spot_jobs.QUEUE}/gone.{todo.address}"
        try:
            told.words.append(spot_jobs.tell_queue(todo.files, todo.address, todo.gone))
            told.gone = True
        except (CfnChainermnError, OSError) as exc:
            told.words.append(f"queue not told yet ({words(exc)}); tried again at the next poll")
    for job in _jobs(todo, told):
        told.step = f"writing {JOBS}/{job}/{spot_jobs.NOTE}{todo.address}"
        try:
            if spot_jobs.write_note(todo.files, job, todo.address, todo.line):
                told.jobs.append(job)
                told.words.append(f"job {job} told")
        except (CfnChainermnError, OSError) as exc:
            told.words.append(f"job {job} not told yet ({words(exc)}); tried again at the next poll")
    told.step = "done"
    return told


def _jobs(todo: Todo, told: Told) -> list[str]:
    """The running jobs holding this node that have no line yet; each one's error its own."""
    told.step = f"listing {spot_jobs.QUEUE}"
    try:
        found = spot_jobs.holders(todo.files)
    except (CfnChainermnError, OSError) as exc:
        told.words.append(f"running jobs not read yet ({words(exc)}); tried again at the next poll")
        return []
    jobs = []
    for job in found:
        if job in todo.told:
            continue
        told.step = f"reading {JOBS}/{job}"
        try:
            if spot_jobs.running_on(todo.files, job, todo.address):
                jobs.append(job)
        except (CfnChainermnError, OSError) as exc:
            told.words.append(f"job {job} not read yet ({words(exc)}); tried again at the next poll")
    return jobs


class Shared:
    """The runs of `tell`, one at a time (spot_attempt.py)."""

    def __init__(self) -> None:
        self._attempt: Attempt[Told] = Attempt("spot-shared-folder")
        self._told = Told("")

    def run(self, todo: Todo, wait: float = SHARED_WAIT_S) -> Told | str:
        """A fresh run's outcome within `wait` s, or an earlier one's if it has come (taken in
        at once: a stuck run is not waited for again); words saying where it is stuck if not."""
        if not self._attempt.running:
            told = self._told = Told(todo.notice)
            try:
                self._attempt.start(lambda: tell(todo, told))
            except OSError as exc:
                return f"queue and jobs not told yet ({words(exc)}); tried again at the next poll"
        else:
            wait = 0.0
        done = self._attempt.result(wait)
        if done is None:
            return (f"the shared folder has not answered for {self._attempt.age():.0f} s ({self._told.step}): "
                    "ranks signalled without waiting for it; the queue's entry and the jobs' lines follow "
                    "when it answers")
        if done.error is not None:  # a bug: the next poll tries again
            return f"shared folder steps failed unexpectedly ({type(done.error).__name__}: {done.error})"
        return self._told

    def close(self) -> Told | str:
        """What a run that has ended came to, taken in now for the watch to record; words for a
        watch that stops while a run is stuck (it is left behind, not joined); "" for neither."""
        if not self._attempt.running:
            return ""
        done = self._attempt.result(0.0)
        if done is None:
            return f"the shared folder still has not answered ({self._told.step}): left behind"
        return self._told if done.error is None else ""
