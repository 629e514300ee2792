"""The stack operations without the CLI: progress and questions go through the caller's Progress."""

from __future__ import annotations

from typing import Any

import pytest
from stack_helpers import NAME, OWN, stack

from cfn_chainermn.stack.follow import Declined, Progress
from cfn_chainermn.stack.operations import StackOps


def test_a_no_to_the_delete_question_changes_nothing(stubbed: Any) -> None:
    stubbed("cloudformation").add_response("describe_stacks", {"Stacks": [stack("CREATE_COMPLETE", Tags=OWN)]},
                                           {"StackName": NAME})
    asked: list[str] = []

    def ask(question: str) -> bool:
        asked.append(question)
        return False

    with pytest.raises(Declined):  # and no list_stack_resources or delete_stack was queued
        StackOps(lambda: stubbed, Progress(say=pytest.fail, ask=ask)).delete(NAME, wait=True, yes=False)
    assert asked == [f"Delete stack {NAME} and every resource in it, the cluster's data included?"]


def test_an_operation_connects_only_when_it_needs_aws(stubbed: Any) -> None:
    said: list[str] = []
    connects: list[int] = []

    def connect() -> Any:
        connects.append(1)
        return stubbed

    two = stack("UPDATE_COMPLETE", Tags=OWN, Parameters=[{"ParameterKey": "WorkerCount", "ParameterValue": "2"}])
    stubbed("cloudformation").add_response("describe_stacks", {"Stacks": [two]}, {"StackName": NAME})
    ops = StackOps(connect, Progress(say=said.append))
    assert connects == []
    assert ops.scale(NAME, 2, wait=True, yes=True) is None
    assert said == [f"stack {NAME} already has 2 workers; nothing to change"]
    assert connects == [1]
