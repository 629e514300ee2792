"""The agent's state file, read by `cfn-chainermn node status` on the node.

{"role", "node_id", "ready", "steps": {name: {"status": ok|failed|pending, "detail", "time"}}}
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cfn_chainermn.node.system import write_atomic

STEPS = ("identity", "imds", "stack", "user", "ssh", "efs", "ready", "hostfile", "signal")


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class State:
    path: Path
    role: str = ""
    node_id: str = ""
    ready: bool = False
    steps: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> State:
        state = cls(path)
        if path.exists():
            data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            state.role = str(data.get("role", ""))
            state.node_id = str(data.get("node_id", ""))
            state.ready = bool(data.get("ready", False))
            state.steps = {str(k): dict(v) for k, v in dict(data.get("steps", {})).items()}
        for name in STEPS:
            state.steps.setdefault(name, {"status": "pending", "detail": "", "time": ""})
        return state

    def mark(self, step: str, status: str, detail: str) -> None:
        self.steps[step] = {"status": status, "detail": detail, "time": now()}
        self.save()

    def save(self) -> None:
        data = {"role": self.role, "node_id": self.node_id, "ready": self.ready,
                "steps": {name: self.steps[name] for name in STEPS if name in self.steps}}
        write_atomic(self.path, json.dumps(data, indent=2, sort_keys=True) + "\n", 0o644)

    def render(self) -> str:
        """`node status` text: one line per step."""
        head = f"node {self.node_id or '?'} ({self.role or '?'}): {'ready' if self.ready else 'NOT ready'}"
        lines = [head]
        for name in STEPS:
            s = self.steps.get(name, {})
            detail = f"  {s.get('detail')}" if s.get("detail") else ""
            when = f"  [{s.get('time')}]" if s.get("time") else ""
            lines.append(f"  {name:<9} {s.get('status', 'pending'):<8}{detail}{when}")
        return "\n".join(lines) + "\n"
