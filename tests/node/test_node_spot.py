"""The Spot watch (node/spot.py): on an interruption notice the node leaves the ready set, each
job holding it gets one log line naming the node and the time, and its ranks there get SIGTERM,
so mpiexec ends the job at once. Real processes, a real IMDS stand-in, a real local node folder;
the whole flow with OpenMPI is tests/local/test_spot_e2e.py."""

from __future__ import annotations

import errno
import io
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import spot_run
from imds_stand_in import ImdsStandIn
from node_sim import LOCAL_USER, SimCluster, local_cluster, local_settings
from spot_run import RUN_PORT, rank_env

from cfn_chainermn.cli import cli
from cfn_chainermn.cli.boundary import run_with_boundary
from cfn_chainermn.errors import AgentError
from cfn_chainermn.node import agent, spot, spot_environ, spot_jobs, spot_retract, spot_shared, steps
from cfn_chainermn.node.context import Context
from cfn_chainermn.node.homefiles import HomeFiles

NOTICE = '{"action": "terminate", "time": "2026-12-02T21:00:00Z"}'
W1 = "127.0.0.3"  # node w1 of local_cluster(d, ["m", "w1"])
NOTE = f"spot.{W1}"  # w1's line for a job, in the job's folder (node/spot_jobs.py)


def test_notice_text() -> None:
    assert spot.parse_notice("") is None  # the 404: no notice
    assert spot.parse_notice(NOTICE) == spot.Notice("terminate", "2026-12-02T21:00:00Z")
    assert spot.parse_notice('{"action": "stop", "time": "2026-12-02T21:00:00Z"}') == spot.Notice(
        "stop", "2026-12-02T21:00:00Z")
    # a body of another shape is still a notice: failing soft early beats waiting for a format
    assert spot.parse_notice("<html>") == spot.Notice("interrupt", "an unknown time")
    # what goes into users' logs and files is cleaned: no line breaks, no shell, no paths
    assert spot.parse_notice('{"action": "terminate\\nrm -rf", "time": "21:00 $(id)"}') == spot.Notice(
        "interrupt", "an unknown time")


def test_a_notice_of_unknown_time_is_kept_for_this_boot_only() -> None:
    """A restarted watch goes on with it; after a stop and a start (a new boot) a notice that
    again names no time begins afresh instead of finding everything done."""
    unknown = spot.Notice("interrupt", "an unknown time")
    assert spot.record_key(unknown, "boot-a") != spot.record_key(unknown, "boot-b")
    assert spot.record_key(spot.Notice("terminate", "2026-12-02T21:00:00Z"), "boot-a") == "2026-12-02T21:00:00Z"


def test_log_line_names_the_node_and_both_times() -> None:
    line = spot_jobs.log_line("i-0abc", "10.0.1.7", "terminate", "2026-12-02T21:00:00Z", "2026-12-02T20:58:01Z")
    assert line == ("cfn-chainermn: 2026-12-02T20:58:01Z Spot interruption notice on node i-0abc (10.0.1.7): EC2 "
                    "will terminate it at 2026-12-02T21:00:00Z; stopping the job's ranks there so the job fails "
                    "now instead of hanging\n")
    odd = spot_jobs.log_line("i-0abc\nfake line", "10.0.1.7 x", "terminate", "2026-12-02T21:00:00Z", "now")
    assert "node (unnamed) (?): EC2" in odd and odd.count("\n") == 1


def test_a_hostfile_holds_a_node_by_its_whole_address() -> None:
    text = "10.0.1.7 slots=4\n10.0.1.70 slots=4\n"
    assert spot_jobs.holds(text, "10.0.1.7") and spot_jobs.holds(text, "10.0.1.70")
    assert not spot_jobs.holds(text, "10.0.1."), "a prefix of an address is not the address"
    assert not spot_jobs.holds("", "10.0.1.7")


def _sleeper(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "60"], env={"PATH": os.environ["PATH"], **env})


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[Path, list[subprocess.Popen[bytes]]]]:
    """A booted local node w1 with jobs in its shared folder, the queue's book listing the ones
    it admitted (the ended one's entry not yet tidied), and three processes: its rank, another
    node's rank (same machine, as on a local cluster) and a login shell on it."""
    d, ids = tmp_path / "lc", ["m", "w1"]
    local_cluster(d, ids)
    for i in (0, 1):
        assert agent.boot(local_settings(d, ids, i), echo=io.StringIO()).ready
    jobs = d / "shared" / "jobs"
    for job, hosts, ended in (("j-on-w1", f"127.0.0.2 slots=1\n{W1} slots=1\n", False),
                              ("j-elsewhere", "127.0.0.2 slots=1\n", False),
                              ("j-ended", f"{W1} slots=1\n", True)):
        (jobs / job).mkdir(parents=True)
        (jobs / job / "hostfile").write_text(hosts)
        (jobs / job / "log").write_text("step 0\n")
        if ended:
            (jobs / job / "exit_code").write_text("0\n")
        (jobs / ".queue").mkdir(mode=0o700, exist_ok=True)
        (jobs / ".queue" / f"h.{job}").touch()
    procs = [_sleeper(rank_env(W1, 1)),
             _sleeper(rank_env("127.0.0.2", 0)),
             _sleeper({"SSH_CONNECTION": f"127.0.0.9 41000 {W1} {RUN_PORT}"})]
    try:
        yield d, procs
    finally:
        for p in procs:
            p.kill()
            p.wait()


@pytest.fixture(autouse=True)
def answering_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rank's environment that answers is given all the time it needs (the watch's 1 s is for a
    node, not a loaded test machine); the test that holds one makes it stuck at a short first wait."""
    monkeypatch.setattr(spot_environ, "ENVIRON_WAIT_S", 30.0)


def _watch(d: Path, imds: ImdsStandIn, ticks: int) -> str:
    return _run(d, spot.imds_poll(imds.url), ticks)


def _run(d: Path, poll: Callable[[], str], ticks: int, **over: str) -> str:
    """`node spot-watch` on w1 for `ticks` polls of `poll`; what it logged. Its ssh port is this
    run's own (spot_run.py): the watch signals this run's stand-in ranks and no one else's."""
    echo = io.StringIO()
    settings = local_settings(d, ["m", "w1"], 1, ssh_port=RUN_PORT, **over)
    agent.spot_watch(settings, None, poll, interval=0.01, ticks=ticks, echo=echo)
    return echo.getvalue()


def test_no_notice_changes_nothing(node: tuple[Path, list[subprocess.Popen[bytes]]]) -> None:
    d, procs = node
    imds = ImdsStandIn({})
    try:
        out = _watch(d, imds, ticks=3)
    finally:
        imds.close()
    assert [r[1] for r in imds.requests if r[0] == "GET"] == ["/latest/meta-data/spot/instance-action"] * 3
    assert (d / "bucket/nodes/w1/ready").exists()
    assert (d / "shared/jobs/j-on-w1/log").read_text() == "step 0\n"
    assert all(p.poll() is None for p in procs)
    assert "Spot interruption notice" not in out


def test_notice_retracts_tells_the_job_once_and_stops_only_its_ranks_here(
        node: tuple[Path, list[subprocess.Popen[bytes]]]) -> None:
    d, (rank_here, rank_elsewhere, login) = node
    imds = ImdsStandIn({"spot/instance-action": NOTICE})
    try:
        out = _watch(d, imds, ticks=3)  # the notice stands for all three polls
    finally:
        imds.close()
    assert not (d / "bucket/nodes/w1/ready").exists() and (d / "bucket/nodes/m/ready").exists()
    lines = (d / f"shared/jobs/j-on-w1/{NOTE}").read_text().splitlines()  # cmd.sh adds it to the log (test_spot_jobs)
    assert len(lines) == 1
    assert "Spot interruption notice on node w1 (127.0.0.3): EC2 will terminate it at 2026-12-02T21:00:00Z" in lines[0]
    for job in ("j-elsewhere", "j-ended"):
        assert not (d / f"shared/jobs/{job}/{NOTE}").exists()
        assert (d / f"shared/jobs/{job}/log").read_text() == "step 0\n"
    assert rank_here.wait(timeout=30) == -15
    assert rank_elsewhere.poll() is None and login.poll() is None
    assert out.count("spot watch: Spot interruption notice: terminate at 2026-12-02T21:00:00Z") == 1
    assert "job j-on-w1 told" in out and f"SIGTERM to ranks {rank_here.pid}" in out
    assert json.loads((d / "nodes/w1/state.json").read_text())["ready"] is True  # boot's record, untouched


def test_a_rank_that_ignores_sigterm_gets_sigkill_after_the_grace(
        node: tuple[Path, list[subprocess.Popen[bytes]]], monkeypatch: pytest.MonkeyPatch) -> None:
    """A SIGTERM handler stuck in an allreduce must not hang the job until EC2 takes the node."""
    d, procs = node
    stubborn = subprocess.Popen(
        [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                               "print('ready', flush=True); time.sleep(60)"],
        env={"PATH": os.environ["PATH"], **rank_env(W1, 2, client_port=41001)},
        stdout=subprocess.PIPE)
    procs.append(stubborn)
    assert stubborn.stdout is not None and stubborn.stdout.readline() == b"ready\n"  # its handler is in place
    monkeypatch.setattr(spot, "KILL_AFTER_S", 0.0)
    polls: list[str] = []

    def poll() -> str:  # the second poll comes once procs[0] has ended of its SIGTERM, however slow the machine
        if polls:
            os.waitid(os.P_PID, procs[0].pid, os.WEXITED | os.WNOWAIT)  # ended, left unreaped
        polls.append(NOTICE)
        return NOTICE
    out = _run(d, poll, ticks=2)
    assert stubborn.wait(timeout=30) == -9
    assert f"SIGKILL to ranks {stubborn.pid}" in out and f"SIGKILL to ranks {procs[0].pid}" not in out


def test_a_link_planted_for_the_note_is_not_followed(node: tuple[Path, list[subprocess.Popen[bytes]]],
                                                     tmp_path: Path) -> None:
    d, (rank_here, _, _) = node
    target = tmp_path / "root-owned"
    target.write_text("keep\n")
    (d / f"shared/jobs/j-on-w1/{NOTE}").symlink_to(target)
    imds = ImdsStandIn({"spot/instance-action": NOTICE})
    try:
        out = _watch(d, imds, ticks=1)
    finally:
        imds.close()
    assert target.read_text() == "keep\n"
    assert f"job j-on-w1 not told yet (~/jobs/j-on-w1/{NOTE} in " in out and "is a symbolic link: refused" in out
    assert rank_here.wait(timeout=30) == -15, "the job still fails fast"


GONE = "shared/jobs/.queue/gone.127.0.0.3"  # the queue's entry for w1 (jobs/sh/queue.sh)
OBSERVER = ("import os, signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *_: print(f'TERM gone={os.path.exists(sys.argv[1])} '\n"
            "                                               f'note={os.path.exists(sys.argv[2])}', flush=True))\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)\n")


def _observer(d: Path, procs: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    """A rank on w1 that survives SIGTERM and says, at each, whether the queue's entry and the
    running job's line existed."""
    p = subprocess.Popen([sys.executable, "-c", OBSERVER, str(d / GONE), str(d / f"shared/jobs/j-on-w1/{NOTE}")],
                         stdout=subprocess.PIPE,
                         env={"PATH": os.environ["PATH"], **rank_env(W1, 3, client_port=41002)})
    procs.append(p)
    assert p.stdout is not None and p.stdout.readline() == b"ready\n"  # its handler is in place
    return p


def _notice(d: Path, ticks: int) -> str:
    imds = ImdsStandIn({"spot/instance-action": NOTICE})
    try:
        return _watch(d, imds, ticks=ticks)
    finally:
        imds.close()


def test_the_queue_and_the_jobs_are_told_before_any_rank_is_signalled(
        node: tuple[Path, list[subprocess.Popen[bytes]]]) -> None:
    """The ranks' end frees the node (the queue must know it goes) and ends the job (cmd.sh then
    adds the job's line to its log: it must be there)."""
    d, procs = node
    observer = _observer(d, procs)
    out = _notice(d, ticks=1)
    assert observer.stdout is not None and observer.stdout.readline() == b"TERM gone=True note=True\n"
    gone = d / GONE
    assert gone.read_text() == "w1 2026-12-02T21:00:00Z\n"  # INSTANCE-ID NOTICE-TIME
    st, queue = gone.stat(), gone.parent.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600 and stat.S_IMODE(queue.st_mode) == 0o700
    assert st.st_uid == queue.st_uid == pwd.getpwnam(LOCAL_USER).pw_uid
    assert "queue told (jobs/.queue/gone.127.0.0.3): no waiting job is placed on 127.0.0.3" in out
    assert out.index("queue told") < out.index("SIGTERM to ranks")


def test_a_restarted_watch_goes_on_instead_of_repeating(node: tuple[Path, list[subprocess.Popen[bytes]]],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """systemd restarts the watch mid-notice: no second retraction, queue entry, log line or
    SIGTERM; the rank's grace runs on from the first run's SIGTERM."""
    d, procs = node
    rank_here, observer = procs[0], _observer(d, procs)
    first = _notice(d, ticks=2)
    pids = " ".join(str(pid) for pid in sorted((rank_here.pid, observer.pid)))  # the watch lists them by pid
    assert "readiness retracted" in first and f"SIGTERM to ranks {pids}" in first
    os.waitid(os.P_PID, rank_here.pid, os.WEXITED | os.WNOWAIT)  # ended by its SIGTERM (left unreaped)
    assert stat.S_IMODE((d / "nodes/w1/spot.json").stat().st_mode) == 0o600
    (d / GONE).unlink()  # the queue drops entries older than 5 minutes: the watch must not renew it
    monkeypatch.setattr(spot, "KILL_AFTER_S", 0.0)  # the grace has passed by the restart
    second = _notice(d, ticks=2)
    assert ("Spot interruption notice: terminate at 2026-12-02T21:00:00Z (an earlier run of the watch began on it: "
            "readiness retracted, queue told, 1 job(s) told, 2 rank(s) sent SIGTERM; going on from there)") in second
    for repeated in ("not marked ready", "queue told (", "job j-on-w1 told", "SIGTERM to"):
        assert repeated not in second, second
    assert f"SIGKILL to ranks {observer.pid} (" in second, "the ended rank_here is not reported as killed"
    assert observer.wait(timeout=30) == -9
    assert observer.stdout is not None and observer.stdout.read() == b"TERM gone=True note=True\n", "one SIGTERM"
    assert not (d / GONE).exists()
    note = (d / f"shared/jobs/j-on-w1/{NOTE}").read_text().splitlines()
    assert sum("Spot interruption notice" in x for x in note) == 1


@pytest.mark.parametrize("planted", [".queue", "gone.127.0.0.3"])
def test_a_link_planted_for_the_queue_entry_is_refused(node: tuple[Path, list[subprocess.Popen[bytes]]],
                                                        tmp_path: Path, planted: str) -> None:
    """The cluster user may plant a link at `.queue` or at the entry: root writes through neither,
    the job still fails fast, and the entry is written at a later poll once the link is gone."""
    d, (rank_here, _, _) = node
    target = tmp_path / "root-owned"
    target.mkdir()
    (target / "keep").write_text("keep\n")
    queue = d / "shared/jobs/.queue"
    shutil.rmtree(queue)
    if planted == ".queue":
        queue.symlink_to(target)
    else:
        queue.mkdir(mode=0o700)
        (queue / planted).symlink_to(target / "keep")
    out = _notice(d, ticks=1)
    assert sorted(p.name for p in target.iterdir()) == ["keep"] and (target / "keep").read_text() == "keep\n"
    assert f"queue not told yet (~/jobs/{planted if planted == '.queue' else '.queue/' + planted} in " in out
    assert "is a symbolic link: refused, not followed" in out
    assert rank_here.wait(timeout=30) == -15, "the job still fails fast"
    (queue if planted == ".queue" else queue / planted).unlink()
    again = _notice(d, ticks=1)
    assert "queue told (jobs/.queue/gone.127.0.0.3)" in again
    assert not (d / GONE).is_symlink() and (d / GONE).read_text() == "w1 2026-12-02T21:00:00Z\n"


def test_ranks_that_cannot_be_signalled_now_are_tried_at_the_next_poll(
        node: tuple[Path, list[subprocess.Popen[bytes]]], monkeypatch: pytest.MonkeyPatch) -> None:
    """The watch out of descriptors (pidfd_open's EMFILE) neither dies nor forgets the ranks."""
    d, (rank_here, _, _) = node
    real = os.pidfd_open

    def full(pid: int, flags: int = 0) -> int:
        raise OSError(errno.EMFILE, "Too many open files")
    monkeypatch.setattr(os, "pidfd_open", full)
    out = _notice(d, ticks=1)
    assert (f"rank {rank_here.pid} not sent SIGTERM yet (EMFILE: no pidfd for rank {rank_here.pid}: Too many "
            "open files (the watch's own limit, not the rank's end)); tried again at the next poll") in out
    assert rank_here.poll() is None
    monkeypatch.setattr(os, "pidfd_open", real)
    assert f"SIGTERM to ranks {rank_here.pid}" in _notice(d, ticks=1)
    assert rank_here.wait(timeout=30) == -15


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the entry to another user")
def test_the_queue_entry_is_the_cluster_users(tmp_path: Path) -> None:
    """Written by root, owned by the cluster user (queue.sh, run as that user, removes old ones),
    inside the jobs folder the boot made; none is made where it is missing (EFS not mounted)."""
    nobody = pwd.getpwnam("nobody")
    mount = tmp_path / "efs"
    mount.mkdir()
    files = HomeFiles(mount, (nobody.pw_uid, nobody.pw_gid))
    text = spot_jobs.gone_text("i-0abc", "2026-12-02T21:00:00Z")
    with pytest.raises(AgentError, match=f"no jobs folder in {mount} \\(the shared folder not mounted\\?\\)"):
        spot_jobs.tell_queue(files, "10.0.1.7", text)
    assert list(mount.iterdir()) == []
    (mount / "jobs").mkdir(mode=0o700)
    os.chown(mount / "jobs", nobody.pw_uid, nobody.pw_gid)
    spot_jobs.tell_queue(files, "10.0.1.7", text)
    for path, mode in ((mount / "jobs/.queue", 0o700), (mount / "jobs/.queue/gone.10.0.1.7", 0o600)):
        st = path.stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (nobody.pw_uid, nobody.pw_gid, mode), path
    assert (mount / "jobs/.queue/gone.10.0.1.7").read_text() == "i-0abc 2026-12-02T21:00:00Z\n"


def test_the_queue_entry_names_a_file_safely() -> None:
    assert spot_jobs.gone_text("i-0abc", "an unknown time") == "i-0abc unknown\n"
    assert spot_jobs.gone_text("i-0abc", "2026-12-02T21:00:00Z\nx") == "i-0abc unknown\n"
    assert spot_jobs.gone_text("i-0abc x", "2026-12-02T21:00:00Z") == "unknown 2026-12-02T21:00:00Z\n"
    with pytest.raises(AgentError, match=re.escape("node address '../x' cannot name a file in jobs/.queue")):
        spot_jobs.tell_queue(HomeFiles(Path("/nonexistent")), "../x", "i-0abc unknown\n")


def test_spot_watch_is_installed_on_spot_instances_only(sim_cluster: SimCluster) -> None:
    c = sim_cluster
    c.nodes["w1"].imds.meta["instance-life-cycle"] = "spot"
    c.nodes["w2"].imds.meta["instance-life-cycle"] = "on-demand"
    for name in ("master", "w1", "w2"):
        assert c.boot(name).ready
    w1, w2 = c.nodes["w1"], c.nodes["w2"]
    unit = "etc/systemd/system/cfn-chainermn-spot.service"
    service = (w1.root / unit).read_text()
    assert " -m cfn_chainermn node spot-watch\n" in service and "Restart=always\n" in service
    assert "systemctl enable --now cfn-chainermn-spot.service" in (
        w1.root / "var/lib/cfn-chainermn/commands.log").read_text().splitlines()
    state = json.loads((w1.root / "var/lib/cfn-chainermn/state.json").read_text())
    assert "cfn-chainermn-spot.service polls the Spot interruption notice every 5 s" in state["steps"]["hostfile"][
        "detail"]
    for other in (c.nodes["master"], w2):
        assert not (other.root / unit).exists()
        assert "spot" not in (other.root / "var/lib/cfn-chainermn/commands.log").read_text()


@pytest.mark.parametrize(("args", "message"), [
    (["--interval", "0"], "--interval must be above 0 and --ticks at least 1"),
    ([], "--imds-url is required with --backend local (a local node has no metadata service)"),
])
def test_spot_watch_usage_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              args: list[str], message: str) -> None:
    argv = ["node", "spot-watch", "--backend", "local", "--state-dir", str(tmp_path), "--node-id", "w1",
            "--user", LOCAL_USER, *args]
    assert run_with_boundary(cli, argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("failure", ["a link at jobs", "EIO listing the queue"])
def test_a_jobs_folder_that_fails_keeps_no_rank_from_its_signal(
        node: tuple[Path, list[subprocess.Popen[bytes]]], monkeypatch: pytest.MonkeyPatch, failure: str) -> None:
    """The shared folder is the user's and EFS's: whatever fails there is said, tried again at
    the next poll, and the ranks are signalled all the same (the job still fails fast)."""
    d, (rank_here, _, _) = node
    jobs = d / "shared/jobs"
    if failure == "a link at jobs":
        jobs.rename(d / "shared/elsewhere")
        jobs.symlink_to(d / "shared/elsewhere")
    else:
        real = os.listdir

        def eio(path: object = ".") -> list[str]:
            if isinstance(path, int):  # a folder opened without following links: the queue's
                raise OSError(errno.EIO, "Input/output error")
            return real(path)  # type: ignore[arg-type]
        monkeypatch.setattr(os, "listdir", eio)
    out = _notice(d, ticks=1)
    assert rank_here.wait(timeout=30) == -15
    assert f"SIGTERM to ranks {rank_here.pid}" in out and "readiness retracted" in out
    if failure == "a link at jobs":
        assert "queue not told yet (~/jobs in " in out and "running jobs not read yet (~/jobs in " in out
    else:
        assert "running jobs not read yet (EIO: Input/output error); tried again at the next poll" in out


def test_a_job_that_cannot_be_read_does_not_keep_the_others_from_their_line(
        node: tuple[Path, list[subprocess.Popen[bytes]]], tmp_path: Path) -> None:
    d, (rank_here, _, _) = node
    odd = d / "shared/jobs/j-odd"
    odd.mkdir()
    (odd / "hostfile").symlink_to(tmp_path)
    (d / "shared/jobs/.queue/h.j-odd").touch()
    out = _notice(d, ticks=1)
    assert "job j-odd not read yet (~/jobs/j-odd/hostfile in " in out and "job j-on-w1 told" in out
    assert "Spot interruption notice on node w1" in (d / f"shared/jobs/j-on-w1/{NOTE}").read_text()
    assert rank_here.wait(timeout=30) == -15


def test_the_ranks_are_signalled_while_s3_is_slow(node: tuple[Path, list[subprocess.Popen[bytes]]],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The retraction (S3 on AWS: up to 10 tries of 60 s) runs beside the rest: here it cannot
    finish until the rank has ended of its SIGTERM, which an inline retraction would never see."""
    d, (rank_here, _, _) = node
    real = steps.retract_ready
    seen: list[int | None] = []

    def slow(ctx: Context) -> str:
        try:
            seen.append(rank_here.wait(timeout=30))  # a liveness bound: the rank's end, or the test fails
        except subprocess.TimeoutExpired:
            seen.append(None)
        return real(ctx)
    monkeypatch.setattr(steps, "retract_ready", slow)
    out = _notice(d, ticks=1)
    assert seen == [-15], "the rank had its SIGTERM before the retraction returned"
    assert out.index(f"SIGTERM to ranks {rank_here.pid}") < out.index("readiness retracted")
    assert not (d / "bucket/nodes/w1/ready").exists()
    assert json.loads((d / "nodes/w1/spot.json").read_text())["retracted"] is True


def test_a_failed_retraction_is_tried_again_at_the_next_poll(
        node: tuple[Path, list[subprocess.Popen[bytes]]], monkeypatch: pytest.MonkeyPatch) -> None:
    d, _ = node
    real, calls = steps.retract_ready, []

    def flaky(ctx: Context) -> str:
        calls.append(1)
        if len(calls) == 1:
            raise AgentError("DeleteObject failed: SlowDown: Please reduce your request rate.")
        return real(ctx)
    monkeypatch.setattr(steps, "retract_ready", flaky)
    out = _notice(d, ticks=2)
    assert ("readiness not retracted yet (DeleteObject failed: SlowDown: Please reduce your request rate.); "
            "tried again at the next poll") in out
    assert len(calls) == 2 and not (d / "bucket/nodes/w1/ready").exists()


def test_a_poll_that_fails_unexpectedly_leaves_the_watch_running(
        node: tuple[Path, list[subprocess.Popen[bytes]]]) -> None:
    d, (rank_here, _, _) = node
    polls: list[str] = []

    def poll() -> str:
        polls.append(NOTICE)
        if len(polls) == 1:
            raise ValueError("a bug")
        return NOTICE
    out = _run(d, poll, ticks=2)
    assert "spot watch: unexpected ValueError: a bug" in out
    assert rank_here.wait(timeout=30) == -15


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root: as any other user the "
                                              "entry is the test user's whatever the watch asks for")
def test_the_watch_gives_the_queue_entry_to_the_cluster_user(node: tuple[Path, list[subprocess.Popen[bytes]]]) -> None:
    """queue.sh, run as the cluster user, removes entries over 5 minutes old, and cmd.sh reads the
    job's line: root's files, 0600, would stay, and could not be read."""
    d, _ = node
    nobody = pwd.getpwnam("nobody")
    _run(d, lambda: NOTICE, 1, user="nobody")
    for path in (d / GONE, d / f"shared/jobs/j-on-w1/{NOTE}"):
        st = path.stat()
        assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid), path


def test_on_aws_the_watch_retracts_through_an_s3_client_with_short_timeouts(
        sim_cluster: SimCluster, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`node spot-watch` as its unit runs it (settings from agent.json): the marker goes from the
    bucket (moto), through an S3 client of the watch's own whose one attempt ends within a minute."""
    c = sim_cluster
    for name in ("master", "w1"):
        assert c.boot(name).ready
    w1 = c.nodes["w1"]
    w1.imds.meta["spot/instance-action"] = NOTICE
    seen: list[agent.AwsClients | None] = []
    real = agent.spot_watch

    def spy(settings: Any, clients: agent.AwsClients | None, *args: Any, **kwargs: Any) -> None:
        seen.append(clients)
        real(settings, clients, *args, **kwargs)
    monkeypatch.setattr(agent, "spot_watch", spy)
    assert run_with_boundary(cli, ["node", "spot-watch", "--root", str(w1.root), "--ticks", "1"]) == 0
    ready = f"nodes/{w1.instance_id}/ready"
    assert ready not in [o["Key"] for o in c.s3.list_objects_v2(Bucket=c.bucket).get("Contents", [])]
    assert seen and seen[0] is not None
    config = seen[0].s3.meta.config
    assert (config.connect_timeout, config.read_timeout, config.retries["total_max_attempts"]) == (
        spot_retract.S3_CONNECT_TIMEOUT_S, spot_retract.S3_READ_TIMEOUT_S, 3)
    assert f"readiness retracted ({ready})" in capsys.readouterr().err


def _notice_while_held(d: Path, ticks: int, release: threading.Event, rank: subprocess.Popen[bytes],
                       poll: Callable[[], str] | None = None) -> str:
    """The watch for `ticks` polls of a notice (from `poll`, or the IMDS stand-in) while a call it
    makes is held until `release`: `rank` must end of its SIGTERM and the watch return meanwhile;
    what it logged. Released at the end whatever happened, so that a failing test does not leave
    the call held."""
    out: list[str] = []
    run = (lambda: _notice(d, ticks=ticks)) if poll is None else (lambda: _run(d, poll, ticks))
    watch = threading.Thread(target=lambda: out.append(run()), daemon=True)
    try:
        watch.start()
        assert rank.wait(timeout=30) == -15, "the rank had its SIGTERM while the call was held"
        watch.join(timeout=30)
        assert not watch.is_alive(), "the watch returned, leaving the held call behind"
        return out[0]
    finally:
        release.set()


HANGS = {  # where the shared folder stops answering: the first call of each step there (HomeFiles.folder)
    "writing the queue's entry": (lambda rel, create: rel == "jobs", "writing jobs/.queue/gone.127.0.0.3"),
    "listing the running jobs": (lambda rel, create: rel == "jobs/.queue" and not create, "listing jobs/.queue"),
    "reading a running job": (lambda rel, create: rel == "jobs/j-on-w1", "reading jobs/j-on-w1"),
}


@pytest.mark.parametrize("hang", sorted(HANGS))
def test_a_shared_folder_that_stops_answering_keeps_no_rank_from_its_signal(
        node: tuple[Path, list[subprocess.Popen[bytes]]], monkeypatch: pytest.MonkeyPatch, hang: str) -> None:
    """EFS is mounted hard: a server that stops answering holds the call until it answers again.
    Here the call blocks until the test releases it, after the rank has had its SIGTERM; the
    watch's three polls start one stuck call, not three, and the watch still returns."""
    d, (rank_here, _, _) = node
    matches, step = HANGS[hang]
    release, stuck = threading.Event(), []
    real = HomeFiles.folder

    def folder(self: HomeFiles, rel: str, **kw: Any) -> Any:
        if self.home == d / "shared" and matches(rel, kw.get("create", True)):
            stuck.append(threading.current_thread())
            release.wait(timeout=60)  # a liveness bound: the test releases it long before
        return real(self, rel, **kw)
    monkeypatch.setattr(HomeFiles, "folder", folder)
    monkeypatch.setattr(spot_shared, "SHARED_WAIT_S", 0.05)  # any bound: the rank's signal cannot wait for the call
    out = _notice_while_held(d, 3, release, rank_here)
    assert len(stuck) == 1 and stuck[0].daemon, "one stuck thread for three polls, not one per poll"
    stuck[0].join(timeout=30)
    assert out.count("the shared folder has not answered for ") == 3 and f"s ({step}): ranks signalled" in out
    assert f"SIGTERM to ranks {rank_here.pid}" in out and "readiness retracted" in out
    assert f"the shared folder still has not answered ({step}): left behind" in out
    again = _notice(d, ticks=1)  # it answers again: the next watch's poll writes what is missing
    assert "job j-on-w1 told" in again and "Spot interruption notice on node w1" in (
        d / f"shared/jobs/j-on-w1/{NOTE}").read_text()
    assert (d / GONE).read_text() == "w1 2026-12-02T21:00:00Z\n"


def _hang_at_the_queue_entry(d: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, Callable[[], None]]:
    """The shared folder hangs at the queue entry's first call until the event is set; and a call
    that sets it once a run has got there and waits for that run to end (the folder answers)."""
    release, entered, stuck = threading.Event(), threading.Event(), []
    real = HomeFiles.folder

    def folder(self: HomeFiles, rel: str, **kw: Any) -> Any:
        if self.home == d / "shared" and rel == "jobs":
            stuck.append(threading.current_thread())
            entered.set()
            release.wait(timeout=60)  # a liveness bound: the test releases it long before
        return real(self, rel, **kw)

    def answer() -> None:
        assert entered.wait(timeout=30), "a run got to the queue entry"
        release.set()
        stuck[0].join(timeout=30)
    monkeypatch.setattr(HomeFiles, "folder", folder)
    monkeypatch.setattr(spot_shared, "SHARED_WAIT_S", 0.05)
    return release, answer


def test_a_shared_folder_run_that_ends_as_the_watch_stops_is_recorded(
        node: tuple[Path, list[subprocess.Popen[bytes]]], monkeypatch: pytest.MonkeyPatch) -> None:
    """Its outcome is taken in at close and recorded: a restarted watch does not write the
    queue's entry again (the queue may have dropped it by then) nor the job's line."""
    d, _ = node
    release, answer = _hang_at_the_queue_entry(d, monkeypatch)
    real = spot.Watch.close

    def close(self: spot.Watch) -> str:  # the folder answers just as the watch stops
        answer()
        return real(self)
    monkeypatch.setattr(spot.Watch, "close", close)
    try:
        out = _notice(d, ticks=1)
    finally:
        release.set()
    assert "queue told (" in out and "job j-on-w1 told" in out
    record = json.loads((d / "nodes/w1/spot.json").read_text())
    assert record["gone"] is True and record["told"] == ["j-on-w1"], record


def test_a_late_answer_for_an_earlier_notice_does_not_count_for_a_new_one(
        node: tuple[Path, list[subprocess.Popen[bytes]]], monkeypatch: pytest.MonkeyPatch) -> None:
    """The run started for the first notice answers while a second notice stands: what it wrote
    names the first notice's time, so the second notice's entry is still written."""
    d, _ = node
    release, answer = _hang_at_the_queue_entry(d, monkeypatch)
    later = '{"action": "terminate", "time": "2026-12-02T22:00:00Z"}'
    polls: list[str] = []

    def poll() -> str:
        if len(polls) == 1:
            answer()  # the first run's answer is there before the second poll takes it in
        polls.append(NOTICE if not polls else later)
        return polls[-1]
    try:
        _run(d, poll, ticks=3)
    finally:
        release.set()
    assert (d / GONE).read_text() == "w1 2026-12-02T22:00:00Z\n"
    record = json.loads((d / "nodes/w1/spot.json").read_text())
    assert record["notice_time"] == "2026-12-02T22:00:00Z" and record["gone"] is True


def test_a_rank_whose_memory_the_shared_folder_holds_keeps_no_other_rank_from_its_signal(
        node: tuple[Path, list[subprocess.Popen[bytes]]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A rank of this node waiting on the hung shared folder may hold its own memory lock, on
    which /proc/PID/environ waits (node/spot_environ.py). Here two such reads block until the
    test releases them: the other rank gets its SIGTERM meanwhile, and so does the held rank
    that OpenMPI's daemon started (known by its parent); a held process that is only the user's
    is named at each poll and signalled once it answers."""
    d, procs = node
    rank_here = procs[0]
    held = _sleeper(rank_env(W1, 5, client_port=41005))  # its parent is no daemon: not known to be a rank
    procs.append(held)
    orted, held_rank = spot_run.daemon(tmp_path, "orted", {"SSH_CONNECTION": f"127.0.0.2 41006 {W1} {RUN_PORT}"},
                                       {"OMPI_COMM_WORLD_RANK": "6"})
    procs.append(orted)
    release, stuck = threading.Event(), []
    real, holding = Path.read_bytes, {Path(f"/proc/{pid}/environ") for pid in (held.pid, held_rank)}

    def read_bytes(self: Path) -> bytes:
        if self in holding:
            stuck.append(threading.current_thread())
            release.wait(timeout=60)  # a liveness bound: the test releases it long before
        return real(self)
    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    polls: list[str] = []

    def poll() -> str:  # a short first wait makes both held reads stuck; then the answering ones get all they need
        monkeypatch.setattr(spot_environ, "ENVIRON_WAIT_S", 30.0 if polls else 0.05)
        polls.append(NOTICE)
        return NOTICE
    out = _notice_while_held(d, 2, release, rank_here, poll)
    assert held.poll() is None, "not signalled while not known to be a rank"
    assert orted.wait(timeout=30) is not None, "the daemon's rank ended of its SIGTERM, the daemon with it"
    assert re.search(rf"SIGTERM to ranks [\d ]*\b{held_rank}\b", out), out
    assert len(stuck) == 2 and all(t.daemon for t in stuck), "one held read each for two polls"
    for thread in stuck:
        thread.join(timeout=30)
    assert out.count(f"process {held.pid} not looked at yet (its /proc/{held.pid}/environ has not answered") == 2
    assert f"SIGTERM to ranks {held.pid}" in _notice(d, ticks=1)
    assert held.wait(timeout=30) == -15


NO_THREAD = {"spot-shared-folder": ("queue and jobs not told yet", "queue told ("),
             "spot-retraction": ("readiness not retracted yet", "readiness retracted (")}


@pytest.mark.parametrize("thread", sorted(NO_THREAD))
def test_no_thread_for_a_step_keeps_no_rank_from_its_signal(
        node: tuple[Path, list[subprocess.Popen[bytes]]], monkeypatch: pytest.MonkeyPatch, thread: str) -> None:
    """The watch at its task limit: the step whose thread cannot start is said and tried at the next poll."""
    d, (rank_here, _, _) = node
    said, then = NO_THREAD[thread]
    real = threading.Thread.start

    def start(self: threading.Thread) -> None:
        if self.name == thread:
            raise RuntimeError("can't start new thread")
        real(self)
    monkeypatch.setattr(threading.Thread, "start", start)
    out = _notice(d, ticks=1)
    assert f"{said} (EAGAIN: no thread for {thread}: can't start new thread); tried again at the next poll" in out
    assert rank_here.wait(timeout=30) == -15
    monkeypatch.setattr(threading.Thread, "start", real)
    again = _notice(d, ticks=1)
    assert then in again, "done at the next poll"
