"""Shared by the IAM tests (imported as `policy_support`; tests are not a package): a policy read the
way IAM reads it, action by action. A statement grants each of its actions on each of its
resources, so moving an action into another statement changes what it reaches even when every
statement still names the same ARNs; the tests compare these per-action grants with a table.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

# (the template conditions the grant exists under, the Resource entry, the statement's IAM Condition),
# the last two as canonical JSON so grants compare as sets.
Grant = tuple[tuple[str, ...], str, str]
ARN_PREFIX = "arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:"
NO_VALUE = {"Ref": "AWS::NoValue"}


def _unless(value: Any) -> tuple[tuple[str, ...], Any]:
    """(conditions, value) of a value wrapped in Fn::If [cond, value, NoValue] (possibly nested)."""
    conditions: tuple[str, ...] = ()
    while isinstance(value, dict) and "Fn::If" in value:
        cond, value, otherwise = value["Fn::If"]
        assert otherwise == NO_VALUE, f"an If whose else is not NoValue: {otherwise}"
        conditions += (cond,)
    return conditions, value


def grant(arn: Any, *conditions: str, when: Any = None) -> Grant:
    """One expected grant: `arn` (as the template writes it) under `conditions`, with IAM Condition `when`."""
    return conditions, json.dumps(arn, sort_keys=True), json.dumps(when, sort_keys=True)


def grants(statements: list[Any], *outer: str) -> dict[str, set[Grant]]:
    """Action -> every (conditions, resource, IAM condition) the statements allow it on."""
    out: dict[str, set[Grant]] = defaultdict(set)
    for entry in statements:
        conditions, s = _unless(entry)
        assert s["Effect"] == "Allow", s
        for resource in s["Resource"]:
            under, arn = _unless(resource)
            for action in s["Action"]:
                out[action].add(grant(arn, *outer, *conditions, *under, when=s.get("Condition")))
    return dict(out)


def sub(text: str) -> dict[str, Any]:
    return {"Fn::Sub": text}


def ec2(kind: str, logical_id: str) -> dict[str, Any]:
    """An EC2 ARN as template/idle_scope.py writes it: `kind`/${logical_id}."""
    return sub(f"{ARN_PREFIX}{kind}/${{{logical_id}}}")
