"""The 2018 scripts' communicator names on a real 3-node local cluster (issue 11 item 5): each
name Chainer 7 removed runs (here, with no GPU, as naive), every rank says so in exactly one line,
and the all-reduces agree across ranks."""

from __future__ import annotations

from pathlib import Path

import pytest
from localcluster import LocalCluster

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).resolve().parent / "scripts" / "removed_communicators.py"
REMOVED = ("hierarchical", "two_dimensional", "single_node")


def test_removed_names_run_with_one_warning_line_per_rank(cluster: LocalCluster) -> None:
    res = cluster.cli("job", "submit", "local", "-n", "3", "-N", "1", str(SCRIPT))
    out = res.stdout + res.stderr
    assert "Unrecognized communicator" not in out, (
        f"the shim is not in the cluster's Python ({cluster.state['python']}): `make install` puts it there\n{out}")
    assert res.returncode == 0, out
    lines = out.splitlines()
    for name in REMOVED:
        warning = (f"cfn-chainermn: ChainerMN communicator '{name}' was removed in Chainer 7; using 'naive' instead "
                   "(no usable GPU: CuPy missing or no CUDA device)")
        assert lines.count(warning) == 3, out  # one per rank
        # allreduce of rank+1 over 3 ranks is 6; the mean of gradients 1, 2, 3 is 2
        ranks = sorted(line for line in lines if line.startswith("rank ") and f": {name} -> " in line)
        assert ranks == [f"rank {r}/3: {name} -> NaiveCommunicator allreduce=6 mean_grad=2" for r in range(3)], out
    assert sum("communicator" in line for line in lines) == 3 * len(REMOVED), out  # nothing else about it
