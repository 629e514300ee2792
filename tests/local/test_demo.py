"""`make demo` (scripts/demo.py) end to end: template, emulated AWS stack, a local cluster's training job.

It runs beside the session cluster on purpose: its own state folder (.demo/cluster, or outside a
checkout other users cannot search), its own port, and (as root) its own user, since `chainer`
is taken; the session cluster must not notice. It runs wherever the checkout is, a clone under
/root included, and shows only what our commands print: moto's own output goes to a log.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from localcluster import ROOT, LocalCluster, down, report_rows

from cfn_chainermn.local import places

pytestmark = pytest.mark.slow
DEMO_STATE = places.place(ROOT, ".demo/cluster")  # where scripts/demo.py puts it
EMULATOR_LOG = ROOT / ".demo" / "aws-emulator.log"
LIMIT = 180


def test_make_demo_runs_in_under_three_minutes(cluster: LocalCluster) -> None:
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
    # The emulator's tracebacks and warnings are moto's, not failures: in its log, named once.
    for noise in ("Traceback", "Error on request", "No Moto CloudFormation support", "NotImplementedError"):
        assert noise not in out, out[-4000:]
    assert out.count(str(EMULATOR_LOG.relative_to(ROOT))) == 1
    assert "No Moto CloudFormation support" in EMULATOR_LOG.read_text()
    assert [row[0] for row in report_rows(out)] == [1, 2, 3, 4, 5]
    assert "job " in out and " exited 0" in out
    m = re.fullmatch(r"demo finished in (\d+) s", out.rstrip().splitlines()[-1])
    assert m is not None, out[-500:]
    assert int(m.group(1)) < LIMIT
    # No collision with the session cluster: another port and (as root) another user, and it still works.
    *_, used = re.findall(r"^nodes .* on port (\d+), user (\S+)$", out, re.MULTILINE)  # a port lost: a line more
    assert int(used[0]) != cluster.state["port"]
    if os.geteuid() == 0:
        assert used[1] != cluster.state["user"]
    assert not (DEMO_STATE / "cluster.json").exists()
    assert cluster.cli("cluster", "check", "local").returncode == 0
