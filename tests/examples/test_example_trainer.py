"""examples/train_mnist.py on one process (OpenMPI's singleton): its flags, and images/s per epoch
next to the accuracy. The 3-node run is in tests/local/test_jobs_e2e.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "train_mnist.py"

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    subprocess.run([sys.executable, "-c", "import chainermn, sklearn"], capture_output=True).returncode != 0,
    reason="needs chainer, mpi4py and scikit-learn (make install)")]


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMPI_")}
    env["OMPI_MCA_rtc"] = "^hwloc"
    if os.geteuid() == 0:
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    return subprocess.run([sys.executable, str(EXAMPLE), *args, "--out", str(tmp_path / "result")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=180)


@pytest.mark.parametrize("flags", [["--double-buffering"], ["--allreduce-grad-dtype", "float16"],
                                   ["-g", "--communicator", "flat", "--double-buffering"]])
def test_pure_nccl_options_without_pure_nccl_are_refused_in_one_line(tmp_path: Path, flags: list[str]) -> None:
    res = run(tmp_path, *flags)
    assert (res.returncode, res.stdout) == (2, "")
    assert res.stderr == ("error: --double-buffering and --allreduce-grad-dtype need the pure_nccl communicator "
                          "(-g)\n")


def test_each_epoch_shows_images_per_second_next_to_accuracy(tmp_path: Path) -> None:
    res = run(tmp_path, "--dataset", "digits", "--epoch", "3", "--unit", "100")
    assert res.returncode == 0, res.stdout + res.stderr
    lines = [line.replace("\x1b[J", "") for line in res.stdout.splitlines()]
    assert "Using naive communicator" in lines  # the CPU default; -g makes it pure_nccl
    header = next(line.split() for line in lines if line.startswith("epoch"))
    assert header[-3:] == ["validation/main/accuracy", "images/s", "elapsed_time"]
    rows = [[float(v) for v in line.split()] for line in lines if line[:1].isdigit()]
    assert [row[0] for row in rows] == [1, 2, 3]
    assert all(len(row) == len(header) and row[-2] > 0 for row in rows), rows
    assert rows[-1][-3] > 0.8, rows  # it learns: validation accuracy on the digits
    summary = lines[-1].split()
    assert summary[0] == "images/s:"
    assert float(summary[1]) == pytest.approx((rows[1][-2] + rows[2][-2]) / 2, rel=1e-3)
    assert lines[-1].endswith("(median of 2 epoch(s), the first left out; 1 ranks)"), lines[-1]
