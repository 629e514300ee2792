"""One real 3-node local cluster (sshd on 127.0.0.2-4, the node agent, OpenMPI) for the session.

Everything is driven through the `cfn-chainermn` command as a user would type it; the cluster
is taken down even when a test fails.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from localcluster import LocalCluster, down, make_state_dir, missing_tools, up


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    absent = missing_tools()
    if absent:
        pytest.skip(f"needs {', '.join(absent)} (scripts/install-sysdeps.sh installs them)")
    state_dir = make_state_dir("cfnmn-test-")
    try:
        res = up(state_dir, 2)
        assert res.returncode == 0, f"local up failed:\n{res.stdout}\n{res.stderr}"
        yield LocalCluster(state_dir)
    finally:
        res = down(state_dir)
        shutil.rmtree(state_dir.parent, ignore_errors=True)
        assert res.returncode == 0, res.stderr
