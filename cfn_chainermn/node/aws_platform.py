"""The node as an EC2 instance: IMDSv2 identity, useradd, EFS through /etc/fstab, OpenMPI's
system-wide hostfiles and a systemd refresh timer, every path and command through System (so a
test root stands for "/")."""

from __future__ import annotations

import json
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

from cfn_chainermn.errors import AgentError
from cfn_chainermn.jobs import fabric
from cfn_chainermn.node import imds_guard, spot, stack_hosts
from cfn_chainermn.node.context import Context
from cfn_chainermn.node.imds import Imds
from cfn_chainermn.node.mount_path import make_mount_point, own_mount_point
from cfn_chainermn.node.settings import AWS_HOST_KEY, Settings
from cfn_chainermn.node.stack_build import Host
from cfn_chainermn.node.system import STD_PATH, System, write_atomic

REFRESH_JITTER_S = 20.0  # under the 30 s interval, with room for the refresh itself

# OpenMPI's system-wide default hostfile where the AMIs keep it (DLAMI, the 2018 AMI, Debian).
DEFAULT_HOSTFILES = (
    "/opt/amazon/openmpi/etc/openmpi-default-hostfile",
    "/usr/local/mpi/etc/openmpi-default-hostfile",
    "/etc/openmpi/openmpi-default-hostfile",
)
BIN_DIRS = ("/opt/amazon/openmpi/bin", "/opt/amazon/efa/bin", "/usr/local/cuda/bin", "/usr/local/mpi/bin")
LIB_DIRS = ("/opt/amazon/openmpi/lib64", "/opt/amazon/openmpi/lib", "/opt/amazon/efa/lib",
            "/usr/local/cuda/lib64", "/usr/local/cuda/extras/CUPTI/lib64", "/usr/local/mpi/lib")
ENV_FILE = ".cfn-chainermn.env"
AMI_MANIFEST = "/etc/cfn-chainermn/ami-manifest.json"  # written by the AMI recipe
EFA_SYSFS = "/sys/class/infiniband"  # one entry per RDMA device: on EC2, the EFA interfaces attached
EFS_OPTIONS = "nfsvers=4.1,rsize=1048576,wsize=1048576,hard,timeo=600,retrans=2,noresvport,_netdev"
UNIT = "cfn-chainermn-refresh"
SPOT_UNIT = "cfn-chainermn-spot"
# A client whose path died (no FIN) is dropped after ~60 s, so an attached job's session ends
# instead of running on unseen; the AMI recipe bakes the same two lines (ami/recipe.yaml sshd:).
SSHD_DROP_IN = "/etc/ssh/sshd_config.d/60-cfn-chainermn.conf"
SSHD_KEEPALIVE = "# written by the cfn-chainermn node agent\nClientAliveInterval 15\nClientAliveCountMax 4\n"
DMI_INSTANCE_ID = "/sys/devices/virtual/dmi/id/board_asset_tag"  # the instance id on Nitro instances
BOOT_ID = "/proc/sys/kernel/random/boot_id"
MOUNT_DEADLINE_S = 600.0  # a new mount target can take minutes to answer
MOUNT_FIRST_DELAY_S = 2.0


def fstab_line(fs_id: str, region: str, mount_point: str) -> str:
    return f"{fs_id}.efs.{region}.amazonaws.com:/ {mount_point} nfs4 {EFS_OPTIONS} 0 0"


class AwsPlatform:
    def __init__(self, system: System, imds: Imds) -> None:
        self.system = system
        self.imds = imds

    def path(self, node_path: str) -> Path:
        return self.system.path(node_path)

    def identify(self, ctx: Context) -> str:
        s = ctx.settings
        ident = self.imds.identity()
        s.node_id, s.private_ip, s.instance_type = ident.instance_id, ident.private_ip, ident.instance_type
        s.subnet_cidr, s.region = ident.subnet_cidr, s.region or ident.region
        ctx.public_keys = ident.public_keys
        ctx.state.node_id = s.node_id
        return f"{s.node_id} {s.instance_type} at {s.private_ip} in {s.subnet_cidr} ({s.region}), IMDSv2"

    def stand_in_id(self) -> str:
        """Without IMDS: the instance id Nitro firmware shows in DMI, else this boot's random id,
        else the host name (each read through System, so a test root can model the image)."""
        tag = self._read(DMI_INSTANCE_ID)
        if re.fullmatch(r"i-[0-9a-f]{8,17}", tag):
            return tag
        boot_id = self._read(BOOT_ID)
        return f"boot-{boot_id}" if boot_id else f"host-{socket.gethostname()}"

    def _read(self, node_path: str) -> str:
        try:
            return self.path(node_path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            return ""

    def guard_imds(self) -> str:
        """IMDS for root only (imds_guard.py), now and at every boot after this one."""
        detail = imds_guard.apply(self.system)
        unit = f"{imds_guard.UNIT}.service"
        return f"{detail}; {unit} {'enabled' if imds_guard.install_unit(self.system) else 'enabled already'}"

    def user(self, ctx: Context) -> str:
        """useradd once; ~/.cfn-chainermn.env sourced first in ~/.bashrc, because Debian/Ubuntu's
        .bashrc returns early when not interactive and ssh commands (orted) need the PATH."""
        s = ctx.settings
        ctx.owner = self.system.ensure_user(s.user, s.home_dir())
        files = ctx.files()  # the home is the user's: no-follow reads and writes (homefiles.py)
        path, libs = self.search_path()
        nccl = fabric.nccl_env([s.instance_type], attached=self.efa_seen() > 0)
        env = f"export PATH={path}\n" + (f"export LD_LIBRARY_PATH={libs}\n" if libs else "")
        env += "".join(f"export {key}={shlex.quote(value)}\n" for key, value in nccl.items())
        env += "".join(f"export {key}={value}\n" for key, value in stack_hosts.login_env(self.system).items())
        files.write(ENV_FILE, env, 0o644)
        source = f'. "$HOME/{ENV_FILE}"  # cfn-chainermn: PATH for non-interactive ssh'
        old = files.read_text(".bashrc")
        if source not in old.splitlines():
            files.write(".bashrc", source + "\n" + old, 0o644)
        return (f"user {s.user} (no sudo), PATH for non-interactive ssh in ~/{ENV_FILE}; "
                f"{self.fabric_detail(s.instance_type)}")

    def search_path(self) -> tuple[str, str]:
        """Only dirs that exist. On an image built by `cfn-chainermn ami build`, the manifest
        names the Chainer stack's interpreter, MPI and CUDA dirs: they go first, and the agent's
        own interpreter (a venv of its own there) goes last so `python` in a job is the stack's."""
        agent_bin = str(Path(sys.executable).parent)
        first_bins, first_libs = self._manifest_dirs()
        bins = [*first_bins, stack_hosts.stack_bin(), *BIN_DIRS, *STD_PATH, agent_bin]
        libs = [*first_libs, *LIB_DIRS, *(fabric.OFI_NCCL_LIB_DIRS if self.efa_seen() else ())]
        always = {*STD_PATH, agent_bin}  # the running interpreter's dir exists by definition
        return (":".join(dict.fromkeys(b for b in bins if self.path(b).is_dir() or b in always)),
                ":".join(dict.fromkeys(d for d in libs if self.path(d).is_dir())))

    def _manifest_dirs(self) -> tuple[list[str], list[str]]:
        """env.PATH / env.LD_LIBRARY_PATH from the AMI manifest; empty on a stock image."""
        try:
            data = json.loads(self.path(AMI_MANIFEST).read_text(encoding="utf-8"))
            env = data.get("env", {}) if isinstance(data, dict) else {}
            bins = [str(d) for d in env.get("PATH", []) if isinstance(d, str)]
            libs = [str(d) for d in env.get("LD_LIBRARY_PATH", []) if isinstance(d, str)]
        except (OSError, ValueError, AttributeError):
            return [], []
        return bins, libs

    def mpi_params(self, settings: Settings) -> list[str]:
        """Beside EFA, OpenMPI's own messages stay on TCP (fabric.py says why)."""
        mca = fabric.mpi_mca([settings.instance_type], attached=self.efa_seen() > 0)
        return [f"{key} = {value}" for key, value in mca.items()]

    def efa_seen(self) -> int:
        """The EFA devices this instance has (what `cluster check` counts with fi_info, here
        without running it: the kernel lists them before any library is asked)."""
        try:
            return sum(1 for _ in self.path(EFA_SYSFS).iterdir())
        except OSError:
            return 0

    def fabric_detail(self, instance_type: str) -> str:
        """The transport jobs of the cluster user take from this node, in words for the log."""
        want, seen = fabric.efa_devices(instance_type), self.efa_seen()
        if not want:
            return "NCCL over TCP sockets"
        if not seen:
            return f"NCCL over TCP sockets: {instance_type} can have {want} EFA devices but none is attached"
        return f"NCCL over EFA ({seen} of {want} devices)"

    def host_key(self, settings: Settings) -> Path:
        """sshd's key; generated (ssh-keygen -A) when the image has none yet."""
        path = self.path(settings.host_key or AWS_HOST_KEY)
        if not path.exists():
            self.path("/etc/ssh").mkdir(parents=True, exist_ok=True)
            argv = ["ssh-keygen", "-A"] + ([] if self.system.real else ["-f", str(self.system.root)])
            subprocess.run(argv, capture_output=True, check=False)
        return path

    def sshd_keepalive(self) -> str:
        """A drop-in where the image's sshd reads them (Ubuntu 22.04+), reloaded when it changed."""
        folder = self.path(SSHD_DROP_IN).parent
        if not folder.is_dir():
            return "sshd keepalive: the image's sshd has no sshd_config.d (left as it is)"
        if write_atomic(self.path(SSHD_DROP_IN), SSHD_KEEPALIVE, 0o644):
            self.system.run(["systemctl", "try-reload-or-restart", "ssh.service", "sshd.service"], check=False)
        return f"sshd keepalive in {SSHD_DROP_IN}"

    def shared_folder(self, ctx: Context) -> str:
        """EFS through /etc/fstab with AWS's NFS options, retried until the mount target
        answers; without --efs-id the mount point is a directory of this node. Either way the
        path to it is checked first, then handed over through a descriptor (mount_path.py)."""
        s = ctx.settings
        top = self.system.root
        if not s.efs_id:
            own_mount_point(top, s.mount_point, ctx.owner)
            return f"no EFS; {s.mount_point} is a local directory"
        make_mount_point(top, s.mount_point)
        self.system.add_fstab(fstab_line(s.efs_id, s.region, s.mount_point))
        self._mount(ctx)
        own_mount_point(top, s.mount_point, ctx.owner)
        return f"EFS {s.efs_id} mounted at {s.mount_point} via /etc/fstab"

    def _mount(self, ctx: Context) -> None:
        s = ctx.settings
        deadline, delay = time.monotonic() + MOUNT_DEADLINE_S, MOUNT_FIRST_DELAY_S
        while not self.system.is_mounted(s.mount_point):
            try:
                self.system.mount(s.mount_point)
            except AgentError as exc:
                if time.monotonic() + delay > deadline:
                    raise AgentError(f"EFS {s.efs_id} not mountable at {s.mount_point} after {MOUNT_DEADLINE_S:g} s: "
                                     f"{exc}; check the mount target's security group allows NFS (2049) from the "
                                     "nodes") from exc
                ctx.log.info(f"EFS mount target not answering yet ({exc}); retrying in {delay:g} s")
                time.sleep(delay)
                delay = min(delay * 2, 30.0)

    def hostfile_copies(self) -> list[Path]:
        return [p for p in map(self.path, DEFAULT_HOSTFILES) if p.parent.is_dir()]

    def chainer_stack_host(self, ctx: Context) -> Host | str:
        """/opt/chainer from PyPI with the GPU parts, unless the image has a stack of its own."""
        return stack_hosts.aws_host(self.system, AMI_MANIFEST)

    def gpu_stack(self, select: str, link: str) -> str:
        return stack_hosts.aws_gpu_stack(self.system, select, link)

    def refresh_timer(self, ctx: Context) -> str | None:
        """A systemd timer running `node refresh` every 30 s; each node's refresh first waits its own
        share of REFRESH_JITTER_S (agent.refresh), which does not stretch the interval: systemd counts
        OnUnitActiveSec from the service's start (timer.c, timer_enter_waiting: TIMER_UNIT_ACTIVE's
        base is the trigger's inactive_exit_timestamp)."""
        unit_dir = self.path("/etc/systemd/system")
        service = (f"[Unit]\nDescription=cfn-chainermn hostfile refresh\nAfter=network-online.target\n\n"
                   f"[Service]\nType=oneshot\nExecStart={sys.executable} -m cfn_chainermn node refresh "
                   f"--jitter {REFRESH_JITTER_S:g}\n")
        timer_unit = ("[Unit]\nDescription=cfn-chainermn hostfile refresh every 30 s\n\n"
                      "[Timer]\nOnBootSec=30\nOnUnitActiveSec=30\nAccuracySec=5\n\n[Install]\nWantedBy=timers.target\n")
        changed = write_atomic(unit_dir / f"{UNIT}.service", service, 0o644)
        changed = write_atomic(unit_dir / f"{UNIT}.timer", timer_unit, 0o644) or changed
        if changed:
            self.system.run(["systemctl", "daemon-reload"])
            self.system.run(["systemctl", "enable", "--now", f"{UNIT}.timer"])
        return f"{UNIT}.timer every 30 s"

    def spot_watch(self, ctx: Context) -> str | None:
        """On a Spot instance (the metadata's instance-life-cycle), a service that polls the
        interruption notice every 5 s (spot.py), restarted if it ever stops; None elsewhere."""
        if self.imds.get(spot.LIFECYCLE_PATH, missing_ok=True) != "spot":
            return None
        service = (f"[Unit]\nDescription=cfn-chainermn Spot interruption watch\nAfter=network-online.target\n\n"
                   f"[Service]\nType=simple\nExecStart={sys.executable} -m cfn_chainermn node spot-watch\n"
                   "Restart=always\nRestartSec=5\n\n[Install]\nWantedBy=multi-user.target\n")
        if write_atomic(self.path(f"/etc/systemd/system/{SPOT_UNIT}.service"), service, 0o644):
            self.system.run(["systemctl", "daemon-reload"])
            self.system.run(["systemctl", "enable", "--now", f"{SPOT_UNIT}.service"])
        return f"{SPOT_UNIT}.service polls the Spot interruption notice every {spot.INTERVAL_S:g} s"
