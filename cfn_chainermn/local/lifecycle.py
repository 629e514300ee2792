"""A cluster on this machine: N+1 sshd "nodes" on 127.0.0.2, .3, ... running the real node agent.

Each node is its own sshd (absolute -f path, own host key and pid file) listening on its own
loopback address, all on one free high port. The node agent then does on each node what it
does on EC2 (keys, known_hosts, hostfile, mca-params.conf) with a folder for the bucket and
another for EFS, so `job submit local ...` exercises the same path as a stack. As root, the
cluster runs as a system user created for it (mpiexec refuses root, yet exits 0); otherwise as
the caller. `down` stops every process of the cluster and removes the user; every file it made
lives in the state folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import hashlib
import json
import os
import pwd
import random
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cfn_chainermn.errors import ConfigError, RemoteError
from cfn_chainermn.local import places, procs
from cfn_chainermn.local import state_dir as local_folder
from cfn_chainermn.local.state import STATE_FILE, LocalNode, LocalState, load
from cfn_chainermn.local.state_dir import MARKER

SSHD = "/usr/sbin/sshd"
RUN_SSHD = Path("/run/sshd")
Log = Callable[[str], None]


@dataclass(frozen=True)
class Spec:
    state_dir: Path
    workers: int = 2
    python: str = sys.executable
    slots: int = 1
    name: str = "local"


def node_ids(workers: int) -> list[str]:
    return ["master", *(f"worker-{i}" for i in range(1, workers + 1))]


def session_path(python: str) -> str:
    """PATH of every ssh session on a node: the cluster's interpreter dir first.

    So a bare `python` (typed on the master, or run by a remote orted) is the project venv's,
    as on an AMI, without touching any real ~/.bashrc: sshd sets it, from the state folder.
    """
    return f"{Path(python).parent}:/usr/local/bin:/usr/bin:/bin"


def sshd_config(*, root: Path, node: str, ip: str, port: int, user: str, home: str, as_root: bool,
                python: str = sys.executable) -> str:
    """One node's sshd_config: its address, its key and pid file, keys only, many startups."""
    d = root / "nodes" / node
    return "\n".join([
        f"{MARKER} state={root}",
        f"ListenAddress {ip}:{port}",
        f"HostKey {d / 'ssh_host_ed25519_key'}",
        f"PidFile {d / 'sshd.pid'}",
        f"AuthorizedKeysFile {home}/.ssh/authorized_keys",
        # As an ordinary user the keys file is outside the user's real home, so its parents
        # (e.g. /tmp) cannot pass StrictModes; as root the home is the cluster user's own.
        f"StrictModes {'yes' if as_root else 'no'}",
        "PubkeyAuthentication yes", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        "UsePAM no", f"AllowUsers {user}", "PermitRootLogin no", "X11Forwarding no", "AllowTcpForwarding no",
        "PrintMotd no", "UseDNS no", "MaxStartups 200:30:400", "MaxSessions 50",
        # a client whose path died is dropped after ~60 s, so its attached job's session ends
        "ClientAliveInterval 15", "ClientAliveCountMax 4",
        # Every node has the same hostname, so OpenMPI's session folders (/tmp/ompi.HOST.UID/...)
        # would be shared between "nodes"; one job's cleanup then races the next job's start and
        # hangs it. A TMPDIR per node gives each its own, as separate machines would have.
        # Only the first SetEnv line counts, so everything goes on this one. As an ordinary user,
        # ssh (mpiexec's launcher) reads ~/.ssh of the real home whatever HOME says: a bare
        # mpiexec on the master must be told the cluster's ssh config.
        f"SetEnv TMPDIR={d / 'tmp'} PATH={session_path(python)}"
        + ("" if as_root else f' HOME={home} "OMPI_MCA_plm_rsh_agent=ssh -F {home}/.ssh/config"'),
        # All "nodes" share this machine's cores: the default post-quantum hybrid key exchange
        # costs ~100 ms of CPU per login, which mpiexec and `cluster check` pay once per node.
        # Plain curve25519 is still a strong exchange, and the traffic never leaves loopback.
        "KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org",
        "Subsystem sftp internal-sftp", "LogLevel INFO", "",
    ])


class _PortTaken(RemoteError):
    """An sshd found the port taken: another server bound it after pick_port found it free."""


def pick_port(addresses: list[str], attempts: int = 50) -> int:
    """One high port free on every node address."""
    rng = random.Random()
    for _ in range(attempts):
        port = rng.randrange(20000, 60000)
        try:
            for ip in addresses:
                with socket.socket() as s:
                    s.bind((ip, port))
            return port
        except OSError:
            continue
    raise RemoteError("no free TCP port shared by the local node addresses; try again")


def _user_name(root: Path) -> str:
    try:
        pwd.getpwnam("chainer")
    except KeyError:
        return "chainer"
    return "cfnmn-" + hashlib.sha256(str(root).encode()).hexdigest()[:6]


def _run(argv: list[str], what: str) -> str:
    res = subprocess.run(argv, capture_output=True, text=True)
    if res.returncode != 0:
        raise RemoteError(f"{what} failed (exit {res.returncode}): {(res.stderr or res.stdout).strip()[-800:]}")
    return res.stdout


def up(spec: Spec, *, log: Log) -> LocalState:
    """Bring the cluster up; on any failure, tear down what was started and re-raise."""
    if spec.workers < 0 or spec.workers > 250:
        raise ConfigError(f"--workers: {spec.workers}; give 0 to 250")
    root = spec.state_dir.resolve()
    python = places.interpreter(spec.python)  # .venv may link to a venv outside a closed checkout
    as_root = os.geteuid() == 0
    if as_root:
        local_folder.check_searchable(root)
        # jobs run as the cluster user with this interpreter: a venv under /root cannot work
        local_folder.check_searchable(Path(python).parent, "--python",
                                      "Make the project's venv where other users can reach it (as root, "
                                      "`make install` does), or pass --python")
    local_folder.refuse_foreign(root)
    old = load(root)
    if old is not None and procs.alive_sshd(root, old):
        raise ConfigError(f"a local cluster is already up in {root}; `cfn-chainermn local down --state-dir {root}`")
    if old is not None:  # left over from a run that died: clear its processes and user first
        down(root, log=log)
    local_folder.prepare(root)
    ids = node_ids(spec.workers)
    ips = [f"127.0.0.{i + 2}" for i in range(len(ids))]
    port = pick_port(ips)
    user = _user_name(root) if as_root else getpass.getuser()
    home = root / "home" / user
    state = LocalState(
        name=spec.name, user=user, home=home, port=port, python=python, as_root=as_root,
        shared=root / "shared", master_id=ids[0], master_ip=ips[0],
        nodes=tuple(LocalNode(id=n, ip=ip, slots=spec.slots) for n, ip in zip(ids, ips, strict=True)))
    try:
        state.save(root)
        if as_root:
            if not RUN_SSHD.exists():
                RUN_SSHD.mkdir(mode=0o755)
                state = dataclasses.replace(state, created_run_sshd=True)
            try:
                pwd.getpwnam(user)
            except KeyError:
                _run(["useradd", "-M", "-d", str(home), "-s", "/bin/bash", "-U", "-p", "*", user], "useradd")
                state = dataclasses.replace(state, created_user=True)
            state.save(root)
        entry = pwd.getpwnam(user)
        for folder in (home, state.shared):
            folder.mkdir(parents=True, exist_ok=True)
            os.chmod(folder, 0o755)
            if as_root:
                os.chown(folder, entry.pw_uid, entry.pw_gid)
        if as_root:
            local_folder.hand_over(state.shared, entry.pw_uid, entry.pw_gid)
        for tries_left in (2, 1, 0):
            log(f"nodes {', '.join(ips)} on port {state.port}, user {user}")
            try:
                for node, ip in zip(ids, ips, strict=True):
                    _start_node(root, node, ip, state.port, user, str(home), as_root, python)
                break
            except _PortTaken:  # chance on a busy machine: stop the nodes started, another port
                if not tries_left:
                    raise
                procs.stop_cluster(root, state, None)
                state = dataclasses.replace(state, port=pick_port(ips))
                state.save(root)
        inventory = {"nodes": [{"instance_id": n, "private_ip": ip, "role": "master" if n == ids[0] else "worker",
                                "instance_type": "local", "state": "running", "slots": spec.slots,
                                "ssh_port": state.port} for n, ip in zip(ids, ips, strict=True)]}
        (root / "inventory.json").write_text(json.dumps(inventory, indent=2) + "\n", encoding="utf-8")
        _boot_agents(root, state, log)
    except BaseException:
        down(root, log=lambda _m: None)
        raise
    return state


def _start_node(root: Path, node: str, ip: str, port: int, user: str, home: str, as_root: bool,
                python: str) -> None:
    d = root / "nodes" / node
    (d / "tmp").mkdir(parents=True, exist_ok=True)
    os.chmod(d / "tmp", 0o1777)
    key = d / "ssh_host_ed25519_key"
    if not key.exists():  # made already where an earlier try lost its port
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{node}@local", "-f", str(key)], "ssh-keygen")
    conf = d / "sshd_config"
    conf.write_text(sshd_config(root=root, node=node, ip=ip, port=port, user=user, home=home, as_root=as_root,
                                python=python), encoding="utf-8")
    _run([SSHD, "-t", "-f", str(conf)], f"sshd config check of {node}")
    log = d / "sshd.log"
    seen = log.stat().st_size if log.exists() else 0
    (d / "sshd.pid").unlink(missing_ok=True)
    _run([SSHD, "-f", str(conf), "-E", str(log)], f"sshd of {node}")
    why = procs.sshd_listening(d, seen)  # its exit status says nothing of the port (see there)
    if why is not None:
        error = _PortTaken if "Address already in use" in why else RemoteError
        raise error(f"sshd of {node} is not listening on {ip}:{port}: {why}")


def agent_argv(root: Path, state: LocalState, node: LocalNode, role: str) -> list[str]:
    """The LOCAL CLUSTER contract command line of the node agent.

    Its interpreter by a path the cluster user can reach too (see places.interpreter): the agent
    puts that folder first on the jobs' PATH.
    """
    return [places.interpreter(sys.executable), "-m", "cfn_chainermn", "node", "boot", "--backend", "local",
            "--state-dir", str(root), "--role", role, "--node-id", node.id, "--private-ip", node.ip,
            "--ssh-port", str(state.port), "--host-key", str(root / "nodes" / node.id / "ssh_host_ed25519_key.pub"),
            "--user", state.user, "--home", str(state.home), "--slots", str(node.slots),
            "--mount-point", str(state.shared)]


def _boot_agents(root: Path, state: LocalState, log: Log) -> None:
    """Master first (it makes the cluster key), then every worker at once."""
    nodes = state.nodes

    def start(node: LocalNode, role: str) -> subprocess.Popen[str]:
        logf = root / "nodes" / node.id / "agent-boot.log"
        with logf.open("w") as out:
            return subprocess.Popen(agent_argv(root, state, node, role), stdout=out, stderr=subprocess.STDOUT,
                                    text=True)

    def wait(node: LocalNode, proc: subprocess.Popen[str]) -> None:
        rc = proc.wait(timeout=300)
        if rc != 0:
            tail = (root / "nodes" / node.id / "agent-boot.log").read_text()[-1500:]
            raise RemoteError(f"node agent on {node.id} failed (exit {rc}):\n{tail.strip()}")
        log(f"{node.id} ({node.ip}) ready")

    wait(nodes[0], start(nodes[0], "master"))
    workers = [(n, start(n, "worker")) for n in nodes[1:]]
    for node, proc in workers:
        wait(node, proc)


def down(state_dir: Path, *, log: Log) -> bool:
    """Stop the cluster in `state_dir`; False when there was none."""
    root = state_dir.resolve()
    local_folder.check_trusted(root)  # its cluster.json names the user to delete, the processes to stop
    state = load(root)
    if state is None:
        return False
    local_folder.check_trusted(root)  # still, after reading: no one swapped it in meanwhile
    uid = None
    if state.created_user:
        try:
            uid = pwd.getpwnam(state.user).pw_uid
        except KeyError:
            uid = None
    stopped = procs.stop_cluster(root, state, uid)
    log(f"stopped {stopped} processes")
    if uid is not None:
        _run(["userdel", state.user], "userdel")
        log(f"removed user {state.user}")
    if state.created_run_sshd and RUN_SSHD.is_dir() and not procs.any_sshd():
        with contextlib.suppress(OSError):
            RUN_SSHD.rmdir()
    (root / STATE_FILE).unlink(missing_ok=True)
    return True


def down_all(*, log: Log) -> list[Path]:
    """Every local cluster whose sshd runs on this machine."""
    done = []
    for root in procs.running_state_dirs(MARKER):
        if down(root, log=log):
            done.append(root)
    return done
