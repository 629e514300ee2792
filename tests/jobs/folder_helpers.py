"""Helpers of the job-folder and job-start tests: a job folder built by prepare() whose cmd.sh
runs the program itself (no MPI), and `sh -c` plus pipes standing in for sshd and the channel."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from cfn_chainermn.jobs import folder as job_folder
from cfn_chainermn.jobs import mpi
from cfn_chainermn.jobs import scripts as job_scripts

NET = mpi.Network(cidr="127.0.0.0/8", instance_type="local")


def launch_with_plain_cmd(tmp_path: Path, *, program: bytes = b"#!/bin/sh\necho hi from $0\n",
                          extra: bytes | None = None, hostfile: str = "127.0.0.2 slots=1\n") -> job_folder.Launch:
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
                          job=mpi.Job(program="job.sh", np=1), net=NET, job_id="j1")
    # No MPI here: cmd.sh runs the program itself, as mpiexec would on each rank.
    count = "cat weights.bin | wc -c;" if extra is not None else ""
    cmd = job_scripts.cmd_script(["sh", "-c", f"./job.sh; {count} exit 3"])
    return job_folder.Launch(launch.ref, launch.job, tuple((n, cmd if n == "cmd.sh" else t) for n, t in launch.written),
                       launch.sent)


def run_sh(command: str, payload: bytes, *, keep_stdin_open: bool = True) -> tuple[int, str]:
    proc = subprocess.Popen(["sh", "-c", command], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(payload)
    proc.stdin.flush()
    if not keep_stdin_open:
        proc.stdin.close()
    out = proc.stdout.read().decode()
    rc = proc.wait(timeout=30)
    if keep_stdin_open:
        proc.stdin.close()
    return rc, out


class PipeChannel:
    """The slice of paramiko.Channel that jobs.start uses, over `sh -c` and pipes."""

    def __init__(self, command: str) -> None:
        self.proc = subprocess.Popen(["sh", "-c", command], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)

    def sendall(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def recv(self, n: int) -> bytes:
        assert self.proc.stdout is not None
        return self.proc.stdout.read1(n)

    def recv_exit_status(self) -> int:
        return self.proc.wait(timeout=30)

    def close(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()


class PipeRemote:
    host = "master.test"

    def __init__(self) -> None:
        self.commands: list[str] = []

    def open_command(self, command: str) -> Any:
        self.commands.append(command)
        return PipeChannel(command)
