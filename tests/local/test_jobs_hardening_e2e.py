"""The job commands' hardening on a real local cluster (issue 12): secrets written nowhere,
cancel that never hits a stranger's process group, one `job list` row per job, and a connection
that silently stops forwarding ends the attached job instead of hanging the client."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from localcluster import LocalCluster, pids_matching, rank_pids, wait_until

pytestmark = pytest.mark.slow
SCRIPTS = Path(__file__).resolve().parent / "scripts"


def test_secret_env_reaches_every_rank_and_no_file(cluster: LocalCluster, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """`--secret-env` over real sshd and OpenMPI: remote ranks get it too; the folder is private."""
    import hashlib

    secret = "tok-9f2c;$HOME 'q'"
    monkeypatch.setenv("CFNMN_TEST_TOKEN", secret)
    script = tmp_path / "secret.sh"
    script.write_text('#!/bin/sh\necho "rank $OMPI_COMM_WORLD_RANK: $(printf %s "$CFNMN_TEST_TOKEN" | sha256sum)"\n')
    script.chmod(0o755)
    res = cluster.cli("job", "submit", "local", "-n", "3", "-N", "1", "--secret-env", "CFNMN_TEST_TOKEN", str(script))
    assert res.returncode == 0, res.stdout + res.stderr
    digest = hashlib.sha256(secret.encode()).hexdigest()
    assert sorted(line.split()[:3] for line in res.stdout.splitlines() if line.startswith("rank ")) == [
        ["rank", f"{r}:", digest] for r in range(3)]
    job_dir = cluster.shared / "jobs" / res.stderr.split()[1].rstrip(":")
    assert job_dir.stat().st_mode & 0o777 == 0o700
    for f in job_dir.rglob("*"):
        assert f.stat().st_mode & 0o077 == 0, f
        assert b"tok-9f2c" not in f.read_bytes(), f


def test_cancel_of_a_finished_job_leaves_the_new_owner_of_its_group_alive(cluster: LocalCluster,
                                                                         tmp_path: Path) -> None:
    script = tmp_path / "quick.sh"
    script.write_text("#!/bin/sh\necho done\n")
    script.chmod(0o755)
    res = cluster.cli("job", "submit", "local", "-n", "1", "--detach", str(script))
    assert res.returncode == 0, res.stderr
    job_id = res.stdout.strip()
    job_dir = cluster.shared / "jobs" / job_id
    assert wait_until(lambda: (job_dir / "exit_code").exists(), 30)
    # a process group of the cluster user's own, as a later job or login may make
    other = cluster.cli("ssh", "local", "--", "setsid sleep 120 > /dev/null 2>&1 & echo $!")
    pid = int(other.stdout)
    try:
        (job_dir / "pgid").write_text(f"{pid}\n")  # the finished job's saved id now names that group
        cancel = cluster.cli("job", "cancel", "local", job_id)
        assert (cancel.returncode, cancel.stdout) == (0, f"job {job_id} had ended already; nothing was stopped\n")
        time.sleep(0.5)
        assert pids_matching("sleep 120") and Path(f"/proc/{pid}").exists(), "cancel killed another process group"
        assert not (job_dir / "cancelled").exists()
    finally:
        subprocess.run(["kill", str(pid)], check=False)


def test_job_list_keeps_one_row_per_job_whatever_its_arguments(cluster: LocalCluster, tmp_path: Path) -> None:
    script = tmp_path / "quiet.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    res = cluster.cli("job", "submit", "local", "-n", "1", "--detach", str(script), "--",
                      "a\tb", "x\nj0-fake\trunning\t0\tnp=64 evil.py")
    assert res.returncode == 0, res.stderr
    job_id = res.stdout.strip()
    assert wait_until(lambda: (cluster.shared / "jobs" / job_id / "exit_code").exists(), 30)
    listed = cluster.cli("job", "list", "local")
    assert listed.returncode == 0, listed.stderr
    rows = listed.stdout.splitlines()
    assert not any(r.startswith("j0-fake") for r in rows), listed.stdout
    (mine,) = [r for r in rows if job_id in r]
    assert mine.startswith(f"{job_id}  exited") and mine.endswith(
        "quiet.sh 'a\\tb' 'x\\nj0-fake\\trunning\\t0\\tnp=64 evil.py'"), mine


@pytest.mark.parametrize("new_too", [False, True], ids=["reconnects", "unreachable"])
def test_a_connection_that_stops_forwarding_ends_the_attached_job(cluster: LocalCluster, new_too: bool) -> None:
    """Between the client and the master's sshd, a proxy that freezes without closing: the client gives
    the connection up within its bound and cancels the job over a new one, or names it."""
    import threading

    from ssh_harness import FreezingProxy, in_thread

    from cfn_chainermn.cluster import hostfile as hf
    from cfn_chainermn.cluster.handle import AwsAccess, resolve
    from cfn_chainermn.cluster.remote import Remote
    from cfn_chainermn.errors import RemoteError
    from cfn_chainermn.jobs import folder as job_folder
    from cfn_chainermn.jobs import mpi, runner

    c = resolve("local", state_dir=str(cluster.state_dir), access=AwsAccess())
    launch = job_folder.prepare(shared=c.shared, script=SCRIPTS / "ticker.py", files=[],
                                hostfile_text=hf.render(c.list_nodes()), net=c.network,
                                job=mpi.Job(program="ticker.py", np=3, per_node=1, args=("120",), python=c.python))
    job_id = launch.ref.job_id
    proxy = FreezingProxy(c.ssh_port, c.master_host)
    remote = Remote("127.0.0.1", port=proxy.port, user=c.user, key_file=c.key_file, host_key=c.master_host_key,
                    keepalive_interval=0.5, dead_after=2.0,
                    connect_timeout=3 if new_too else 20)  # short only where it is expected to run out
    ticked = threading.Event()

    def run() -> None:
        with remote:
            runner.start(remote, launch, detach=False,
                         on_line=lambda line: ticked.set() if line.startswith("tick 1") else None)

    worker, raised = in_thread(run)
    try:
        assert ticked.wait(60)
        assert len(rank_pids(job_id, "ticker.py")) == 3
        proxy.freeze(new_too=new_too)
        worker.join(60)  # well before the job's 120 s: bounded by dead_after, not by the job (no tighter timed assert)
        assert not worker.is_alive(), "job submit hung on a connection that stopped forwarding"
        assert len(raised) == 1 and isinstance(raised[0], RemoteError), raised
        lost = f"lost the connection to 127.0.0.1 while job {job_id} ran (nothing received for 2s, keepalives " \
               "unanswered); "
        if not new_too:
            assert str(raised[0]) == lost + "it was cancelled over a new connection"
            assert wait_until(lambda: not pids_matching(job_id), 30), pids_matching(job_id)
            assert (cluster.shared / "jobs" / job_id / "cancelled").exists()
        else:
            assert str(raised[0]).startswith(lost + "cancelling it over a new connection failed too (")
            assert str(raised[0]).endswith(f"`cfn-chainermn job cancel NAME {job_id}`")
    finally:
        proxy.close()
        cluster.cli("job", "cancel", "local", job_id)
    assert wait_until(lambda: not pids_matching(job_id), 30), pids_matching(job_id)


def test_real_sshd_answers_the_keepalive_so_silence_is_not_loss(cluster: LocalCluster) -> None:
    """5 s without output, well over the bound: OpenSSH answers every keepalive request (a bound of
    seconds, so a CI machine that stalls this process for a second is not a false loss)."""
    from cfn_chainermn.cluster.handle import AwsAccess, resolve
    from cfn_chainermn.cluster.remote import Remote

    c = resolve("local", state_dir=str(cluster.state_dir), access=AwsAccess())
    with Remote(c.master_host, port=c.ssh_port, user=c.user, key_file=c.key_file, host_key=c.master_host_key,
                keepalive_interval=0.3, dead_after=3.0) as remote:
        assert remote.capture("sleep 5; echo still-here") == (0, "still-here\n")
        assert remote.lost is None
