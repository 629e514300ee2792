"""A stack's id, which `stack delete` takes in place of NAME: the one name a deleted stack keeps.

A stack name is free again once its stack is deleted; the id is the stack's alone. DescribeStacks
takes either for a running stack, and only the id for a deleted one: "Running stacks: You can
specify either the stack's name or its unique stack ID. Deleted stacks: You must specify the unique
stack ID" (StackName of DescribeStacksInput, botocore data/cloudformation/2010-05-15/service-2.json;
the API reference says the same); DeleteStack takes "The name or the unique stack ID". So what
`stack delete --no-wait` leaves for later names the id, and that later command can reach only the
stack it deleted, never a new stack of the same name. The id is the stack's ARN,
`arn:${Partition}:cloudformation:${Region}:${Account}:stack/${StackName}/${Id}` (Service
Authorization Reference, CloudFormation's resource types); ${Id} is a UUID in every id seen, but
only its characters are checked here: CloudFormation, not this pattern, decides whether it exists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cfn_chainermn.errors import ConfigError
from cfn_chainermn.names import STACK_NAME_PATTERN

STACK_ID = re.compile(r"arn:aws(?:-[a-z]+)*:cloudformation:(?P<region>[a-z]{2}(?:-[a-z]+)+-\d{1,2}):\d{12}:"
                      rf"stack/(?P<name>{STACK_NAME_PATTERN})/[A-Za-z0-9-]{{1,128}}")
STACK_ID_FORM = "arn:aws:cloudformation:REGION:ACCOUNT:stack/NAME/ID"


@dataclass(frozen=True)
class StackRef:
    """NAME as given: a stack's name, or its id with the name and region the id holds."""

    name: str
    stack_id: str | None = None
    region: str | None = None

    def region_with(self, given: str | None) -> str | None:
        """The region to ask: the id's own (another region's CloudFormation does not know it), so a
        different --region (or --config region) is a mistake, refused before any AWS call."""
        if self.region and given and given != self.region:
            raise ConfigError(f"--region: {given} is not the region of stack id {self.stack_id}; "
                              f"leave --region (and --config's region) out, or give {self.region}")
        return self.region or given


def is_stack_id(value: str) -> bool:
    """Whether NAME is meant as an id (no stack name starts with `arn:`: a name has no colon)."""
    return value.startswith("arn:")


def stack_ref(value: str) -> StackRef | None:
    """NAME read as a name or an id; None for a malformed id (the caller says so, exit 2)."""
    if not is_stack_id(value):
        return StackRef(value)
    found = STACK_ID.fullmatch(value)
    return StackRef(found["name"], value, found["region"]) if found else None
