"""`make demo` (scripts/demo.py) end to end: template, emulated AWS stack, a local cluster's training job.

It runs beside the session cluster on purpose: its own state folder (.demo/cluster), its own
port, and (as root) its own user, since `chainer` is taken; the session cluster must not notice.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from localcluster import ROOT, LocalCluster, down, report_rows

pytestmark = pytest.mark.slow
DEMO_STATE = ROOT / ".demo" / "cluster"
LIMIT = 180


def _unsearchable_parent() -> Path | None:
    for folder in [ROOT, *ROOT.parents]:
        if not os.stat(folder).st_mode & 0o001:
            return folder
    return None


def test_make_demo_runs_in_under_three_minutes(cluster: LocalCluster) -> None:
    blocked = _unsearchable_parent()
    if os.geteuid() == 0 and blocked is not None:
        pytest.skip(f"the demo's cluster user cannot reach {DEMO_STATE}: {blocked} is not searchable by other "
                    f"users (mode {oct(os.stat(blocked).st_mode & 0o777)})")
    ok = False
    try:
        res = subprocess.run([sys.executable, "scripts/demo.py"], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, timeout=LIMIT)
        out = res.stdout  # progress lines (stack events, local up) go to stderr
        assert res.returncode == 0, out[-4000:]
        ok = True
    finally:
        if not ok and (DEMO_STATE / "cluster.json").exists():
            down(DEMO_STATE)  # a demo killed by the timeout cannot take its cluster down itself
    assert "stack demo: DELETE_COMPLETE" in out
    assert [row[0] for row in report_rows(out)] == [1, 2, 3, 4, 5]
    assert "job " in out and " exited 0" in out
    m = re.fullmatch(r"demo finished in (\d+) s", out.rstrip().splitlines()[-1])
    assert m is not None, out[-500:]
    assert int(m.group(1)) < LIMIT
    # No collision with the session cluster: another port and (as root) another user, and it still works.
    (used,) = re.findall(r"^nodes .* on port (\d+), user (\S+)$", out, re.MULTILINE)
    assert int(used[0]) != cluster.state["port"]
    if os.geteuid() == 0:
        assert used[1] != cluster.state["user"]
    assert not (DEMO_STATE / "cluster.json").exists()
    assert cluster.cli("cluster", "check", "local").returncode == 0
