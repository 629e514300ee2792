"""`stack status`'s idle line: the limits (the stack's parameters) and what the master last
published of its count (names.IDLE_STATUS, node/idle.py): idle since when, the deadline, or what
keeps the cluster busy, and why its action did not finish. Pure text, the time passed in."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from cfn_chainermn.config.sections import IDLE_OFF, has_idle_limit

STALE_S = 600.0  # the master publishes at least every 5 minutes; older than this, say so


def limits_text(parameters: Mapping[str, str]) -> str:
    parts = []
    if parameters.get("IdleMinutes", IDLE_OFF) != IDLE_OFF:
        parts.append(f"after {parameters['IdleMinutes']} idle min")
    if parameters.get("MaxHours", IDLE_OFF) != IDLE_OFF:
        parts.append(f"at {parameters['MaxHours']} h")
    return f"{parameters.get('IdleAction', 'delete')} {' or '.join(parts)}"


def _clock(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(seconds))


def _minutes(seconds: float) -> str:
    return f"{max(0, int(seconds // 60))} min"


def idle_text(parameters: Mapping[str, str], record: Mapping[str, Any] | None, now: float) -> str:
    """One or two lines under `idle`; "" when the stack has no limit."""
    if not has_idle_limit(parameters):
        return ""
    head = f"idle     {limits_text(parameters)}"
    if record is None:
        return f"{head}; the master has not published its count yet"
    when = float(record.get("time", 0.0))
    age = f"as of {_clock(when)}" + (" (stale: is the master running?)" if now - when > STALE_S else "")
    busy = [str(b) for b in record.get("busy") or []]
    since, deadline = record.get("idle_since"), record.get("deadline")
    state = f"busy: {', '.join(busy[:4])}" if busy else \
        f"idle for {_minutes(now - float(since))}" if since is not None else "idle"
    line2 = f"         {state}"
    if deadline is not None:
        left = float(deadline) - now
        line2 += (f"; deadline {_clock(float(deadline))} (in {_minutes(left)}: {record.get('reason', '')})"
                  if left > 0 else f"; deadline passed: {record.get('reason', '')}")
    if record.get("acting"):
        line2 += f"; the master is acting ({record.get('action', '')})"
    if record.get("failed"):  # it did not finish: tried again at a refresh, the words say when (node/idle_tick.py)
        line2 += f"\n         not done: {record['failed']}"
    return f"{head}; {age}\n{line2}"
