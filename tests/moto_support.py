"""A moto server in a process of its own, on a port the kernel gives it as it binds.

Choosing a "free" port here and passing it to `moto_server -p` left a window of seconds (moto's
imports) in which any other server on the machine (another test run's SSH stand-in, IMDS
stand-in, or moto) could bind that port first: moto then died on EADDRINUSE and its health
check, or the tests, talked to the other server. Here moto binds port 0 itself
(ThreadedMotoServer: werkzeug's make_server, then `server_address`) and prints the port it got.
The process also ends when its stdin closes, so a test run that is killed leaves no server behind.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

# MOTO_PORT is what moto_server sets for the few backends that call moto back (settings.moto_server_port).
LAUNCH = """
import os, sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
port = server.get_host_and_port()[1]
os.environ["MOTO_PORT"] = str(port)
print(port, flush=True)
os.dup2(2, 1)
sys.stdin.read()
"""


def start_moto(log: Path, timeout: float = 60) -> tuple[subprocess.Popen[bytes], int]:
    """The server process and its port, once it listens; RuntimeError (with the log's tail) when it
    exits or says nothing within `timeout` seconds (its imports alone take seconds on a loaded machine)."""
    env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", LAUNCH], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=out, env=env)
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n") and proc.poll() is None and time.monotonic() < deadline:
        if select.select([proc.stdout], [], [], 0.5)[0]:
            chunk = os.read(proc.stdout.fileno(), 64)
            if not chunk:  # it closed stdout: it is ending
                break
            line += chunk
    if not line.strip().isdigit():
        stop_moto(proc)
        raise RuntimeError(f"moto server did not start: {line!r}; {log.read_text(errors='replace')[-2000:]}")
    return proc, int(line)


def stop_moto(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s; the pipes closed."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()
