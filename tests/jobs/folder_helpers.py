"""Helpers of the job-folder and job-start tests: a job folder built by prepare() whose cmd.sh
runs the program itself (no MPI), and a command run as the master would (tests/fake_channel.py:
`sh -c` plus pipes standing in for sshd and the channel)."""

from __future__ import annotations

from pathlib import Path

from fake_channel import FakeChannel

from cfn_chainermn.jobs import folder as job_folder
from cfn_chainermn.jobs import mpi
from cfn_chainermn.jobs import scripts as job_scripts

NET = mpi.Network(cidr="127.0.0.0/8", instance_type="local")


def launch_with_plain_cmd(tmp_path: Path, *, program: bytes = b"#!/bin/sh\necho hi from $0\n",
                          extra: bytes | None = None, hostfile: str = "127.0.0.2 slots=1\n",
                          args: tuple[str, ...] = (), secrets: tuple[tuple[str, str], ...] = ()) -> job_folder.Launch:
    src = tmp_path / "src"
    src.mkdir(parents=True, exist_ok=True)
    script = src / "job.sh"
    script.write_bytes(program)
    script.chmod(0o755)
    files = []
    if extra is not None:
        data = src / "weights.bin"
        data.write_bytes(extra)
        files.append(data)
    launch = job_folder.prepare(shared=str(tmp_path / "shared"), script=script, files=files, hostfile_text=hostfile,
                          job=mpi.Job(program="job.sh", np=1, args=args), net=NET, job_id="j1", secrets=secrets)
    # No MPI here: cmd.sh runs the program itself, as mpiexec would on each rank.
    count = "cat weights.bin | wc -c;" if extra is not None else ""
    cmd = job_scripts.cmd_script(["sh", "-c", f"./job.sh; {count} exit 3"])
    return job_folder.Launch(launch.ref, launch.job, tuple((n, cmd if n == "cmd.sh" else t) for n, t in launch.written),
                       launch.sent, launch.secrets)


def run_sh(command: str, payload: bytes, *, keep_stdin_open: bool = True) -> tuple[int, str]:
    """Run `command` as the master would, `payload` on its stdin; its exit code and output."""
    chan = FakeChannel.shell(command)
    chan.sendall(payload)
    if not keep_stdin_open:
        chan.shutdown_write()
    out = b""
    while data := chan.recv(1 << 16):
        out += data
    rc = chan.recv_exit_status()
    chan.close()
    return rc, out.decode()
