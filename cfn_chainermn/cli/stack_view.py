"""How stack commands show things: text for people, JSON for scripts (stdout only), progress
and questions on stderr.

Kept apart from the commands so each command stays a few lines and every view is one
function of plain data.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from cfn_chainermn.names import OUT_MASTER_DNS

if TYPE_CHECKING:
    from cfn_chainermn.cli.aws_flags import AwsTarget
    from cfn_chainermn.stack.follow import Progress
    from cfn_chainermn.stack.operations import StackOps

EXIT_DECLINED = 1
EXIT_INTERRUPTED = 130


def say(message: str) -> None:
    """Progress and diagnostics go to stderr, so stdout carries only results."""
    click.echo(message, err=True)


def ask(question: str) -> bool:
    """Ask on stderr; no answer (no terminal to give one) is a no."""
    try:
        return bool(click.confirm(question, default=False, err=True))
    except click.Abort:
        return False


def progress() -> Progress:
    """An operation's progress on stderr, its questions on the terminal."""
    from cfn_chainermn.stack.follow import Progress

    return Progress(say=say, ask=ask)


def operations(target: AwsTarget) -> StackOps:
    """The stack operations of one command: AWS through its Services, progress on stderr."""
    from cfn_chainermn.stack.operations import StackOps

    return StackOps(target.connect, progress())


@contextlib.contextmanager
def outcomes() -> Iterator[None]:
    """A declined question ends the command with exit 1, a stopped watch with 130; both said already or here."""
    from cfn_chainermn.stack.follow import Declined, WatchStopped

    try:
        yield
    except Declined:
        say("nothing was changed (pass --yes to skip this question)")
        raise click.exceptions.Exit(EXIT_DECLINED) from None
    except WatchStopped:
        raise click.exceptions.Exit(EXIT_INTERRUPTED) from None


def _iso(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value or "")


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=_iso))


def ordered_outputs(outputs: Mapping[str, str]) -> list[tuple[str, str]]:
    """ClusterMasterPublicDNS first (what people ssh to), the rest by name."""
    return sorted(outputs.items(), key=lambda kv: (kv[0] != OUT_MASTER_DNS, kv[0]))


def print_outputs(stack: Mapping[str, Any] | None, output: str) -> None:
    """The stack's outputs on stdout: a table, or a JSON object."""
    from cfn_chainermn.stack.cfn import outputs_of

    outs = outputs_of(stack or {})
    if output == "json":
        emit_json(outs)
    elif outs:
        click.echo(outputs_text(outs))


def outputs_text(outputs: Mapping[str, str]) -> str:
    rows = ordered_outputs(outputs)
    width = max((len(k) for k, _ in rows), default=0)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def event_json(event: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "time": _iso(event.get("Timestamp")),
        "resource": event.get("LogicalResourceId", ""),
        "type": event.get("ResourceType", ""),
        "physical_id": event.get("PhysicalResourceId", ""),
        "status": event.get("ResourceStatus", ""),
        "reason": event.get("ResourceStatusReason", ""),
    }


def stack_json(stack: Mapping[str, Any]) -> dict[str, Any]:
    from cfn_chainermn.stack.cfn import outputs_of, parameters_of, simplify, tags_of

    return {
        "name": stack["StackName"],
        "id": stack.get("StackId", ""),
        "status": stack["StackStatus"],
        "state": simplify(stack["StackStatus"]),
        "reason": stack.get("StackStatusReason", ""),
        "created": _iso(stack.get("CreationTime")),
        "updated": _iso(stack.get("LastUpdatedTime")),
        "parameters": parameters_of(stack),
        "outputs": outputs_of(stack),
        "tags": tags_of(stack),
    }


def status_text(stack: Mapping[str, Any]) -> str:
    info = stack_json(stack)
    p = info["parameters"]
    lines = [
        f"stack    {info['name']}",
        f"state    {info['state']} ({info['status']}{': ' + info['reason'] if info['reason'] else ''})",
        f"created  {info['created']}" + (f"  updated {info['updated']}" if info["updated"] else ""),
    ]
    if p:
        spot = " (Spot)" if p.get("SpotWorkers") == "true" else ""
        lines.append(f"size     1 x {p.get('MasterInstanceType', '?')} master + {p.get('WorkerCount', '?')} x "
                     f"{p.get('WorkerInstanceType', '?')} workers{spot}")
    if info["outputs"]:
        lines += ["", outputs_text(info["outputs"])]
    return "\n".join(lines)


def node_json(node: Any) -> dict[str, Any]:
    return {"instance_id": node.instance_id, "role": node.role, "private_ip": node.private_ip,
            "instance_type": node.instance_type, "state": node.state, "ready": node.ready, "slots": node.slots}


def nodes_text(nodes: list[Any]) -> str:
    """One line per node: role, id, private IP, type, EC2 state, and whether its agent finished."""
    if not nodes:
        return "nodes    none running"
    rows = [f"  {n.role:<7} {n.instance_id:<20} {n.private_ip or '-':<15} {n.instance_type:<14} {n.state:<8} "
            f"{'ready' if n.ready else 'not ready'}" for n in nodes]
    return "\n".join([f"nodes    {sum(n.ready for n in nodes)} of {len(nodes)} ready", *rows])


def list_rows(stacks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from cfn_chainermn.stack.cfn import parameters_of, simplify

    rows = []
    for s in stacks:
        p = parameters_of(s)
        rows.append({"name": s["StackName"], "state": simplify(s["StackStatus"]), "status": s["StackStatus"],
                     "created": _iso(s.get("CreationTime")), "workers": p.get("WorkerCount", ""),
                     "instance_type": p.get("MasterInstanceType", "")})
    return rows


def list_text(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no cfn-chainermn stacks in this region"
    head = ("NAME", "STATE", "STATUS", "WORKERS", "TYPE", "CREATED")
    table = [head] + [(r["name"], r["state"], r["status"], str(r["workers"]), r["instance_type"],
                       r["created"][:19]) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table)
