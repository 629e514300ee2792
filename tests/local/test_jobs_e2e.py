"""End to end on a real 3-node local cluster: real sshd, real OpenMPI, real ChainerMN."""

from __future__ import annotations

import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from localcluster import ROOT, LocalCluster, pids_matching, rank_pids, report_rows, wait_until

pytestmark = pytest.mark.slow
SCRIPTS = Path(__file__).resolve().parent / "scripts"
EXAMPLE = ROOT / "examples" / "train_mnist.py"


def test_hostfile_lists_three_ready_nodes(cluster: LocalCluster) -> None:
    res = cluster.cli("hostfile", "local")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "127.0.0.2 slots=1\n127.0.0.3 slots=1\n127.0.0.4 slots=1\n"
    res = cluster.cli("hostfile", "local", "--wait", "4", "--timeout", "0.5")
    assert res.returncode == 1  # a timeout, not an SSH failure (5)
    assert res.stderr == "error: only 3 of 4 nodes ready after 0.5s (1 node not launched yet)\n"


def test_an_unknown_job_is_one_error_line_and_nothing_else(cluster: LocalCluster) -> None:
    for command in (["logs", "local", "20991231-000000-0000"], ["logs", "local", "20991231-000000-0000", "-f"],
                    ["cancel", "local", "20991231-000000-0000"]):
        res = cluster.cli("job", *command)
        assert (res.returncode, res.stdout) == (5, ""), res.stdout
        assert res.stderr.startswith("error: no job 20991231-000000-0000 on the cluster"), res.stderr


def test_train_mnist_streams_epochs_and_learns(cluster: LocalCluster) -> None:
    proc = subprocess.Popen(
        cluster.args("job", "submit", "local", "-n", "3", "-N", "1", str(EXAMPLE), "--",
                     "--dataset", "digits", "--epoch", "3"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    arrivals: list[tuple[float, str]] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        arrivals.append((time.monotonic(), line))
    rc = proc.wait(timeout=120)
    out = "".join(line for _, line in arrivals)
    assert rc == 0, out + (proc.stderr.read() if proc.stderr else "")
    assert "Num process (COMM_WORLD): 3" in out
    assert "Using naive communicator" in out and "Num unit: 1000" in out
    assert "Num Minibatch-size: 100" in out and "Num epoch: 3" in out
    header = next(line for _, line in arrivals if "validation/main/accuracy" in line)
    for col in ("epoch", "main/loss", "validation/main/loss", "main/accuracy", "images/s", "elapsed_time"):
        assert col in header
    rows = report_rows(out)
    assert [r[0] for r in rows] == [1, 2, 3]
    assert all(r[5] > 0 for r in rows), rows  # images/s, all 3 ranks together
    assert "images/s: " in out and "; 3 ranks)" in out
    assert rows[-1][4] > rows[0][4], f"validation accuracy did not rise: {rows}"
    assert rows[-1][1] < rows[0][1], f"loss did not fall: {rows}"
    # Streamed: the epoch lines reached us one by one, not all at the end.
    epoch_times = [t for t, line in arrivals if report_rows(line)]
    assert epoch_times[-1] - epoch_times[0] > 0.1


def test_exit_code_of_a_failing_rank_is_returned(cluster: LocalCluster) -> None:
    res = cluster.cli("job", "submit", "local", "-n", "3", "-N", "1", str(SCRIPTS / "exit_on_rank1.py"))
    assert res.returncode == 3, res.stdout + res.stderr
    assert "rank 1 of 3" in res.stdout
    assert "exited 3" in res.stderr


def test_files_and_env_reach_every_rank(cluster: LocalCluster, tmp_path: Path) -> None:
    data = tmp_path / "data.txt"
    data.write_text("payload-7f3a\n")
    helpers = tmp_path / "helpers"
    helpers.mkdir()
    (helpers / "tag.py").write_text('TAG = "t-91"\n')
    res = cluster.cli("job", "submit", "local", "-n", "3", "-N", "1", "--files", str(data), "--files", str(helpers),
                      "--env", "FOO=bar", "--env", "BAZ=two words; $HOME", str(SCRIPTS / "show_file_env.py"))
    assert res.returncode == 0, res.stdout + res.stderr
    lines = sorted(line for line in res.stdout.splitlines() if line.startswith("rank "))
    assert lines == [f"rank {r}: data=payload-7f3a tag=t-91 FOO=bar BAZ=two words; $HOME" for r in range(3)], \
        res.stdout


def test_detached_job_survives_the_client_and_logs_follow_it(cluster: LocalCluster) -> None:
    res = cluster.cli("job", "submit", "local", "-n", "3", "-N", "1", "--detach", str(SCRIPTS / "ticker.py"), "--",
                      "8")  # long enough to be seen running on a loaded machine
    assert res.returncode == 0, res.stderr
    job_id = res.stdout.strip()
    # The client has exited (disconnected); the job goes on.
    assert wait_until(lambda: len(rank_pids(job_id, "ticker.py")) == 3, 30)
    listed = cluster.cli("job", "list", "local")
    assert f"{job_id}  running" in listed.stdout
    follow = cluster.cli("job", "logs", "local", job_id, "--follow", timeout=60)
    assert follow.returncode == 0, follow.stderr
    assert "tick 0" in follow.stdout and follow.stdout.rstrip().endswith("finished")
    listed = cluster.cli("job", "list", "local")
    assert f"{job_id}  exited" in listed.stdout
    assert (cluster.shared / "jobs" / job_id / "exit_code").read_text().strip() == "0"


def _start_ticker(cluster: LocalCluster, detach: bool) -> tuple[str, subprocess.CompletedProcess[str] | None]:
    args = ["job", "submit", "local", "-n", "3", "-N", "1", *(["--detach"] if detach else []),
            str(SCRIPTS / "ticker.py"), "--", "120"]
    res = cluster.cli(*args)
    return res.stdout.strip(), res


def test_cancel_leaves_no_ranks(cluster: LocalCluster) -> None:
    job_id, res = _start_ticker(cluster, detach=True)
    assert res is not None and res.returncode == 0, res.stderr if res else ""
    assert wait_until(lambda: len(rank_pids(job_id, "ticker.py")) == 3, 30)
    cancel = cluster.cli("job", "cancel", "local", job_id)  # bounded by cli's timeout, not by a timed assert
    assert cancel.returncode == 0, cancel.stderr
    assert wait_until(lambda: not pids_matching(job_id), 30), pids_matching(job_id)  # SIGKILLed: gone when scheduled
    assert f"{job_id}  cancelled" in cluster.cli("job", "list", "local").stdout


@pytest.mark.parametrize("how", ["ctrl-c", "killed"])
def test_client_going_away_cancels_the_job(cluster: LocalCluster, how: str) -> None:
    before = set((cluster.shared / "jobs").iterdir()) if (cluster.shared / "jobs").exists() else set()
    proc = subprocess.Popen(cluster.args("job", "submit", "local", "-n", "3", "-N", "1",
                                         str(SCRIPTS / "ticker.py"), "--", "120"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("tick 1"):
            break
    (job_dir,) = set((cluster.shared / "jobs").iterdir()) - before
    assert len(rank_pids(job_dir.name, "ticker.py")) == 3
    proc.send_signal(signal.SIGINT if how == "ctrl-c" else signal.SIGKILL)
    rc = proc.wait(timeout=30)
    assert rc == (130 if how == "ctrl-c" else -9)
    assert wait_until(lambda: not pids_matching(job_dir.name), 30), pids_matching(job_dir.name)
    assert (job_dir / "cancelled").exists()


def test_bare_mpiexec_on_the_master_needs_no_hostfile(cluster: LocalCluster) -> None:
    shared = cluster.shared
    target = shared / "train_mnist.py"
    shutil.copy(EXAMPLE, target)
    venv = Path(str(cluster.state["python"])).parent.parent
    # Bare `python`, as the issue types it: this machine has no /usr/bin/python, so it must be the
    # cluster's interpreter on the master (the shell) and on every worker (found by orted).
    res = cluster.cli("ssh", "local", "--",
                      "cd && command -v python && "
                      "mpiexec -n 3 -N 1 python -c 'import sys; print(\"rank-prefix\", sys.prefix)'"
                      f" && mpiexec -n 3 -N 1 python {target} --dataset digits --epoch 2")
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.splitlines()[0] == str(venv / "bin" / "python")
    assert [line for line in res.stdout.splitlines() if line.startswith("rank-prefix")] == [f"rank-prefix {venv}"] * 3
    assert "Num process (COMM_WORLD): 3" in res.stdout
    assert [r[0] for r in report_rows(res.stdout)] == [1, 2]


def test_cluster_check_all_ok(cluster: LocalCluster) -> None:
    res = cluster.cli("cluster", "check", "local")
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split()[:4] == ["NODE", "ADDRESS", "ROLE", "SSH"]
    assert [line.split()[:4] for line in lines[1:4]] == [
        ["master", "127.0.0.2", "master", "ok"], ["worker-1", "127.0.0.3", "worker", "ok"],
        ["worker-2", "127.0.0.4", "worker", "ok"]]
    assert lines[-1] == "all 3 nodes ok"


def test_stopped_node_is_named_fast_by_check_and_submit(cluster: LocalCluster) -> None:
    pid = cluster.sshd_pid("worker-2")
    subprocess.run(["kill", str(pid)], check=True)
    # this cluster's worker-2 only: another local cluster on the machine has a worker-2 too
    assert wait_until(lambda: not pids_matching(str(cluster.state_dir / "nodes" / "worker-2" / "sshd_config")), 30)
    try:  # fast: named by the refusal itself, not by a connect timeout running out ("timed out")
        res = cluster.cli("cluster", "check", "local")
        assert res.returncode == 5
        assert "worker-2 (127.0.0.4) unreachable" in res.stderr and "Connection refused" in res.stderr
        assert "1 of 3 nodes failed" in res.stderr
        res = cluster.cli("job", "submit", "local", "-n", "3", "-N", "1", str(SCRIPTS / "exit_on_rank1.py"))
        assert res.returncode == 5, res.stdout + res.stderr
        assert "could not start its ranks: worker-2 (127.0.0.4) unreachable" in res.stderr
        assert "Connection refused" in res.stderr
    finally:
        cluster.start_sshd("worker-2")
    assert wait_until(lambda: cluster.cli("cluster", "check", "local").returncode == 0, 60)


def test_tampered_host_key_is_refused(cluster: LocalCluster, tmp_path: Path) -> None:
    published = cluster.state_dir / "bucket" / "nodes" / "master" / "host_ed25519.pub"
    good = published.read_text()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    published.write_text((tmp_path / "other.pub").read_text())
    try:
        res = cluster.cli("ssh", "local", "--", "true")
        assert res.returncode == 5
        assert "host key of 127.0.0.2" in res.stderr and "has CHANGED" in res.stderr
        assert "--accept-new-host-key" in res.stderr
        res = cluster.cli("job", "submit", "local", "-n", "1", str(SCRIPTS / "exit_on_rank1.py"))
        assert res.returncode == 5 and "has CHANGED" in res.stderr
        # The explicit opt-in connects, and says which key it accepted.
        res = cluster.cli("ssh", "local", "--accept-new-host-key", "--", "echo", "in")
        assert res.returncode == 0 and res.stdout == "in\n"
        assert "accepted host key SHA256:" in res.stderr
    finally:
        published.write_text(good)


def test_ssh_command_keeps_stdout_and_stderr_apart(cluster: LocalCluster) -> None:
    """As `ssh host CMD` does: an MPI warning on stderr must not end up in `... > result`."""
    res = cluster.cli("ssh", "local", "--",
                      "seq 1 20000; echo to-stderr >&2; seq 20001 40000 >&2; printf no-newline; exit 3")
    assert res.returncode == 3, res.stderr
    assert res.stdout == "".join(f"{i}\n" for i in range(1, 20001)) + "no-newline"
    assert res.stderr.splitlines()[:2] == ["to-stderr", "20001"]
    assert res.stderr.endswith("40000\n")


def test_ssh_command_reads_our_stdin_and_stops_quietly_when_our_stdout_closes(cluster: LocalCluster) -> None:
    res = cluster.cli("ssh", "local", "--", "cat > got.txt; wc -l < got.txt; rm got.txt", input="a\nb\nc\n")
    assert (res.returncode, res.stdout, res.stderr) == (0, "3\n", "")
    # `... | head -1`: the reader goes away; like ssh, no traceback and no "session broke" message.
    piped = subprocess.run(f"{shlex.join(cluster.args('ssh', 'local', '--', 'seq 1 1000000'))} | head -1",
                           shell=True, capture_output=True, text=True, timeout=60, cwd=ROOT, stdin=subprocess.DEVNULL,
                           executable="/bin/bash")
    assert (piped.stdout, piped.stderr) == ("1\n", "")
    # -n, as ssh -n: the command reads no stdin, so a `while read` loop gets every line
    ssh_n = shlex.join(cluster.args("ssh", "local", "-n", "--", "echo"))
    loop = subprocess.run(f"printf 'l1\\nl2\\n' | while read x; do {ssh_n} got $x; done", shell=True,
                          capture_output=True, text=True, timeout=60, cwd=ROOT, executable="/bin/bash")
    assert (loop.returncode, loop.stdout) == (0, "got l1\ngot l2\n"), loop.stderr


def test_ssh_command_with_a_stdin_that_stays_open_exits_cleanly(cluster: LocalCluster) -> None:
    """A terminal, or a pipe whose writer lives on: the command ends, we exit, stdin unread.

    (A read of Python's buffered stdin left blocked in a thread aborted the interpreter at exit.)
    """
    proc = subprocess.Popen(cluster.args("ssh", "local", "--", "echo hi"), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:  # our end of its stdin stays open until it has exited
        rc = proc.wait(timeout=30)
        assert proc.stdout is not None and proc.stderr is not None
        assert (rc, proc.stdout.read(), proc.stderr.read()) == (0, "hi\n", "")
    finally:
        proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    ssh = shlex.join(cluster.args("ssh", "local", "--", "echo hi"))
    if shutil.which("script"):  # util-linux: run it on a pseudo-terminal
        tty = subprocess.run(["script", "-qec", ssh, "/dev/null"], capture_output=True, text=True, timeout=60,
                             cwd=ROOT)
        assert tty.returncode == 0 and "hi" in tty.stdout, tty.stdout + tty.stderr


def test_ssh_without_command_is_a_shell_with_the_pinned_key(cluster: LocalCluster) -> None:
    res = subprocess.run(cluster.args("ssh", "local"), input="echo shell-of-$(id -un)\nexit 7\n",
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert res.returncode == 7, res.stderr
    assert f"shell-of-{cluster.state['user']}" in res.stdout


def test_console_fingerprints_verify_the_master_when_no_key_is_published(cluster: LocalCluster) -> None:
    """The AWS fallback (cloud-init's fingerprints on the EC2 console) against a real sshd."""
    from cfn_chainermn.cluster.remote import Remote, fingerprint
    from cfn_chainermn.errors import RemoteError

    published = (cluster.state_dir / "bucket" / "nodes" / "master" / "host_ed25519.pub").read_text()
    state = cluster.state

    def remote(prints: tuple[str, ...]) -> Remote:
        return Remote(str(state["master_ip"]), port=int(str(state["port"])), user=str(state["user"]),
                      key_file=Path(str(state["home"])) / ".ssh" / "id_ed25519", host_key=None,
                      host_fingerprints=prints)

    with remote(("SHA256:someOtherKey", fingerprint(published))) as r:
        assert r.capture("echo in") == (0, "in\n")
    with pytest.raises(RemoteError, match=r"shows SHA256:\S+, which is not among the fingerprints in its console "
                                          r"output \(SHA256:someOtherKey\); refusing.*--accept-new-host-key"):
        remote(("SHA256:someOtherKey",)).connect()


def test_more_ranks_than_slots_is_refused_before_anything_is_sent(cluster: LocalCluster) -> None:
    jobs_dir = cluster.shared / "jobs"
    before = set(jobs_dir.iterdir()) if jobs_dir.exists() else set()
    for flags, message in [(["-n", "4", "-N", "1"], "-n/-N: 4 ranks at 1 per node need 4 nodes, 3 are ready"),
                           (["-n", "4"], "-n: 4 ranks, but the 3 ready nodes have 3 slots")]:
        res = cluster.cli("job", "submit", "local", *flags, str(SCRIPTS / "exit_on_rank1.py"))
        assert res.returncode == 2, res.stderr
        assert res.stderr == f"error: {message}; wait for more nodes (`cfn-chainermn hostfile local --wait N`) " \
                             "or lower -n\n"
    assert (set(jobs_dir.iterdir()) if jobs_dir.exists() else set()) == before
