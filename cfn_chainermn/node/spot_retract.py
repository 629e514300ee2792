"""The Spot watch's retraction of readiness, in a thread of its own.

The watch's first step (spot.py) deletes the node's ready marker in the bucket. On AWS that is
S3 through the agent's client, which retries a call up to 10 times (aws.MAX_ATTEMPTS) with
botocore's default 60 s connect and read timeouts (botocore/endpoint.py DEFAULT_TIMEOUT,
the default of Config's connect_timeout and read_timeout): run inline, a slow or
unreachable S3 could spend the 2-minute notice before the first rank got its SIGTERM. So the
watch starts it first, goes on with the queue and the ranks, and takes the outcome in when there
is one (a poll waits POLL_WAIT_S at most); a failed attempt is tried again at the next poll.
`node spot-watch` also gives the watch an S3 client of its own with short timeouts and 3 tries
in all (s3_config), so one attempt ends within about a minute (3 x 8 s, and botocore's standard
mode backs off 1 s, then 2 s at most between tries, 20 s plus 5 where S3 asks for a pause:
botocore/retries/standard.py ExponentialBackoff) and the next poll can try afresh.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cfn_chainermn.node import steps
from cfn_chainermn.node.context import Context
from cfn_chainermn.node.spot_attempt import Attempt, Done, words

if TYPE_CHECKING:
    from botocore.config import Config

S3_RETRIES = 2  # botocore's max_attempts counts the tries after the first
S3_CONNECT_TIMEOUT_S = 3.0
S3_READ_TIMEOUT_S = 5.0


def s3_config() -> Config:
    """The watch's S3 client settings: the agent's (standard retries, user agent), shorter."""
    from botocore.config import Config

    from cfn_chainermn.aws import botocore_config

    return botocore_config(S3_RETRIES).merge(Config(connect_timeout=S3_CONNECT_TIMEOUT_S,
                                                     read_timeout=S3_READ_TIMEOUT_S))


class Retraction:
    """steps.retract_ready in a thread of its own (spot.py's docstring, step 1; spot_attempt.py);
    at most one at a time. Only this thread calls the bucket while it runs, and boto3's clients
    may be used from another thread than their maker's anyway (boto3's guide, clients.html,
    "Multithreading or multiprocessing with clients"); the local bucket is a folder."""

    POLL_WAIT_S = 1.0  # how long a poll waits at its end for the thread
    CLOSE_WAIT_S = 30.0  # how long a watch that stops waits for it, to log its outcome

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._attempt: Attempt[str] = Attempt("spot-retraction")
        self._refused: Done[str] | None = None

    def start(self) -> None:
        try:
            self._attempt.start(lambda: steps.retract_ready(self.ctx))
        except OSError as exc:  # no thread (spot_attempt.py): said at this poll's end, tried at the next
            self._refused = Done(None, exc)

    def result(self, wait: float) -> tuple[bool, str] | None:
        """(retracted, words) once the attempt has ended, waiting `wait` s at most; None while it runs."""
        done, self._refused = self._refused or self._attempt.result(wait), None
        if done is None:
            return None
        if done.error is not None:  # S3 throttled or down, or a bug: said, and tried at the next poll
            return False, f"readiness not retracted yet ({words(done.error)}); tried again at the next poll"
        return True, str(done.value)
