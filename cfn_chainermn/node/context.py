"""What every step receives: settings, the back ends (the platform among them), the log and the state."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from cfn_chainermn.node.backends import Bucket, Discovery, Inventory, Platform, Signaller
from cfn_chainermn.node.homefiles import HomeFiles
from cfn_chainermn.node.settings import Settings
from cfn_chainermn.node.state import State


class AgentLog:
    """Timestamped lines to the log file and to stderr (which the EC2 console shows).

    Never pass key material here: only names, paths and outcomes are logged.
    """

    def __init__(self, path: Path, echo: TextIO | None = None) -> None:
        self.path = path
        self.echo = echo if echo is not None else sys.stderr
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, level: str, message: str) -> None:
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {level} {message}\n"
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line)
        self.echo.write(f"cfn-chainermn: {line}")
        self.echo.flush()

    def info(self, message: str) -> None:
        self.write("INFO", message)

    def error(self, message: str) -> None:
        self.write("ERROR", message)


@dataclass
class Context:
    settings: Settings
    platform: Platform
    bucket: Bucket
    inventory: Inventory
    signaller: Signaller
    log: AgentLog
    state: State
    owner: tuple[int, int] = (-1, -1)
    public_keys: list[str] = field(default_factory=list)
    # The ready marker this boot retracted (None: there was none), so that an unchanged node
    # re-publishes the same bytes and a second boot changes nothing.
    retracted_ready: bytes | None = None
    # What this refresh's discovery found (steps.cluster_files): the master's idle count reads the
    # workers' busy markers from it.
    seen: Discovery | None = None

    def home(self) -> Path:
        """The user's home as a path on this machine (under the root directory on AWS)."""
        return self.platform.path(self.settings.home_dir())

    def files(self) -> HomeFiles:
        """The only way steps touch files in the user's home: no link is ever followed."""
        return HomeFiles(self.home(), self.owner)
