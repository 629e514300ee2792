"""A worker's busy marker, so that idle shutdown sees the whole cluster (issue 13).

A job can run on the workers with nothing on the master: pdsh, `ssh worker nohup python ...`,
or a rank's GPU process. So each worker's refresh looks at itself (idle_probe.node_activity:
MPI launchers and daemons, GPU holders, ssh sessions) and keeps `nodes/<id>/busy` in the key
bucket true: PutObject when it becomes busy or what keeps it busy changes, DeleteObject when it
becomes idle, nothing while it stays as it was. What it last published is kept (root's, beside
the discovery cache), so a steady node costs no call per interval; a lost record costs one call.
A worker that cannot look (no process list, a failing GPU query) publishes that: busy.

The master reads the markers of the nodes in its current discovery from the listing of nodes/
it already makes (discovery.py), each marker's body only when its ETag changed: a terminated
node's lingering marker is not live, so it counts for nothing. What a marker says is a worker's
word, so it is cleaned (idle_probe.clean, as the master's own words are) before `stack status`
or a log shows it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from cfn_chainermn.cluster.inventory import BUSY_NAME
from cfn_chainermn.errors import CfnChainermnError
from cfn_chainermn.names import NODES_PREFIX
from cfn_chainermn.node import idle_probe
from cfn_chainermn.node.system import write_atomic

if TYPE_CHECKING:
    from cfn_chainermn.node.backends import Bucket
    from cfn_chainermn.node.context import Context

PROC = "/proc"  # a node path (under the platform's root); a test points it at a folder of its own
RECORD = "busy-marker.json"  # what this worker last published, beside discovery.json


def key(node_id: str) -> str:
    return f"{NODES_PREFIX}{node_id}/{BUSY_NAME}"


def render(node_id: str, words: tuple[str, ...], since: float) -> bytes:
    """The marker: which node, what keeps it busy, since when (epoch seconds)."""
    return json.dumps({"node": node_id, "busy": list(words), "since": since}, sort_keys=True).encode()


def parse(data: bytes | None) -> tuple[str, ...]:
    """What a marker says, as the master counts it: a marker that exists is busy, whatever it
    holds (too large, damaged, empty: the worker could not say what, so the master cannot tell)."""
    if data is None:
        return ("busy marker too large to read",)
    try:
        found = json.loads(data.decode("utf-8"))
        said = found.get("busy") if isinstance(found, dict) else None
        words = idle_probe.clean(said) if isinstance(said, list) else ()
    except ValueError:
        words = ()
    return words or ("busy marker unreadable",)


def _last(record: Path) -> tuple[str, ...] | None:
    """The words last published (() after a delete), or None when unknown (no or a damaged record)."""
    try:
        found = json.loads(record.read_text(encoding="utf-8"))
        words = found["busy"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return tuple(str(w) for w in words) if isinstance(words, list) else None


def keep(bucket: Bucket, node_id: str, words: tuple[str, ...], record: Path, now: float) -> str:
    """Make the marker say `words` (() = idle: no marker) with the fewest calls: none when the
    last published words are these. What was done, in words ("" when nothing). A failed call
    raises and leaves the record as it was, so the next refresh tries again."""
    words = idle_probe.clean(words)
    if _last(record) == words:
        return ""
    if words:
        bucket.put(key(node_id), render(node_id, words, now))
        done = f"busy marker {key(node_id)} published: {', '.join(words)}"
    else:
        bucket.delete(key(node_id))
        done = f"busy marker {key(node_id)} removed: idle"
    write_atomic(record, json.dumps({"busy": list(words), "since": now}) + "\n", 0o600)
    return done


def now() -> float:
    """The clock a marker's time comes from (a test compresses time by replacing it)."""
    return time.time()


def tick_worker(ctx: Context) -> str | None:
    """A worker's look at itself, before its refresh's discovery so that a failing discovery does
    not keep it from publishing; the failure, else None (the master: None, it looks at itself in
    idle_master.tick_master). A failure is logged; the caller raises it once the hostfile is
    written or discovery has failed, so the timer's unit shows it."""
    s = ctx.settings
    if "master" in (s.role, ctx.state.role):
        return None
    activity = idle_probe.node_activity(ctx.platform.path(PROC))
    try:
        done = keep(ctx.bucket, s.node_id, tuple(activity.words()), s.discovery_path().with_name(RECORD), now())
    except (CfnChainermnError, OSError) as exc:
        ctx.log.error(f"busy marker: {exc}")
        return f"busy marker: {exc}"
    if done:
        ctx.log.info(done)
    return None
