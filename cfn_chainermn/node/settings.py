"""The agent's settings: command-line flags at boot, saved for the refresh timer.

Boot writes them (with the identity it learned) to agent.json; `node refresh` reads them back,
so the systemd unit needs no flags. Paths depend on the back end: under the root directory on
AWS, under DIR/nodes/<id>/ for a local cluster.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from cfn_chainermn import names
from cfn_chainermn.errors import ConfigError
from cfn_chainermn.node.system import System, write_atomic

AWS_SETTINGS = "/etc/cfn-chainermn/agent.json"
AWS_STATE = "/var/lib/cfn-chainermn/state.json"
AWS_LOCK = "/var/lib/cfn-chainermn/hostfile.lock"
AWS_DISCOVERY = "/var/lib/cfn-chainermn/discovery.json"  # node/discovery.py's cache, root's
AWS_SPOT = "/var/lib/cfn-chainermn/spot.json"  # node/spot_record.py: what the Spot watch did, root's
AWS_LOG = "/var/log/cfn-chainermn/agent.log"
AWS_HOST_KEY = "/etc/ssh/ssh_host_ed25519_key.pub"


@dataclass
class Settings:
    backend: str = "aws"  # aws | local
    role: str = ""  # master | worker
    stack: str = ""
    region: str = ""
    bucket: str = ""
    signal_resource: str = ""
    mount_point: str = names.DEFAULT_MOUNT_POINT
    efs_id: str = ""
    state_dir: str = ""
    node_id: str = ""
    private_ip: str = ""
    instance_type: str = ""
    subnet_cidr: str = ""
    ssh_port: int = 22
    host_key: str = ""
    user: str = "chainer"
    home: str = ""
    slots: int = 0
    root: str = "/"
    endpoint_url: str = ""
    imds_url: str = "http://169.254.169.254"
    imds_wait: float = 180.0  # imds.WAIT_S: seconds of retries before identity fails
    key_wait: float = 900.0
    stack_wheelhouse: str = ""  # a local node's only source for the Chainer stack ("": not installed)
    stack_wait: float = 3600.0  # seconds a worker waits for the master's Chainer stack build

    @property
    def local(self) -> bool:
        return self.backend == "local"

    def node_dir(self) -> Path:
        return Path(self.state_dir) / "nodes" / self.node_id

    def settings_path(self) -> Path:
        if self.local:
            return self.node_dir() / "agent.json"
        return System(self.root).path(AWS_SETTINGS)

    def state_path(self) -> Path:
        return self.node_dir() / "state.json" if self.local else System(self.root).path(AWS_STATE)

    def log_path(self) -> Path:
        return self.node_dir() / "agent.log" if self.local else System(self.root).path(AWS_LOG)

    def lock_path(self) -> Path:
        """Serialises hostfile writers: local nodes share one home, and the timer may race a boot."""
        return Path(self.state_dir) / "hostfile.lock" if self.local else System(self.root).path(AWS_LOCK)

    def discovery_path(self) -> Path:
        """What one refresh learned for the next (host keys read, the cluster view and its ETag)."""
        return self.node_dir() / "discovery.json" if self.local else System(self.root).path(AWS_DISCOVERY)

    def spot_path(self) -> Path:
        """What the Spot watch did for the notice standing, so that a restarted watch goes on."""
        return self.node_dir() / "spot.json" if self.local else System(self.root).path(AWS_SPOT)

    def home_dir(self) -> str:
        return self.home or f"/home/{self.user}"

    def check(self, *, boot: bool) -> None:
        """Every missing or wrong flag at once, each naming the flag."""
        problems = []
        if self.backend not in ("aws", "local"):
            problems.append(f"--backend: {self.backend!r} is not aws or local")
        if boot and self.role not in ("master", "worker"):
            problems.append("--role: give master or worker")
        if self.local:
            for flag, value in (("--state-dir", self.state_dir), ("--node-id", self.node_id)):
                if not value:
                    problems.append(f"{flag} is required with --backend local")
            if boot:
                for flag, value in (("--private-ip", self.private_ip), ("--host-key", self.host_key),
                                    ("--home", self.home)):
                    if not value:
                        problems.append(f"{flag} is required with --backend local")
        else:
            required = [("--stack", self.stack), ("--bucket", self.bucket)]
            required += [("--signal-resource", self.signal_resource)] if boot else []
            why = "the template's UserData passes it" if boot else f"no settings saved at {self.settings_path()}"
            for flag, value in required:
                if not value:
                    problems.append(f"{flag} is required on AWS ({why}; `node boot` saves them)")
        if problems:
            raise ConfigError(problems)

    def save(self) -> None:
        write_atomic(self.settings_path(), json.dumps(asdict(self), indent=2, sort_keys=True) + "\n", 0o600)

    @classmethod
    def load(cls, path: Path) -> Settings:
        try:
            data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read agent settings {path}: {exc}; run `cfn-chainermn node boot` first") from exc
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def merged(self, overrides: dict[str, Any]) -> Settings:
        """These settings with the given (non-None) values replaced."""
        data = asdict(self)
        data.update({k: v for k, v in overrides.items() if v is not None})
        return Settings(**data)
