"""Builders reach parameters and conditions through objects, so a misspelt name fails at build."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from troposphere import Template

from cfn_chainermn.config.model import ClusterConfig
from cfn_chainermn.config.params import template_parameters
from cfn_chainermn.template import efa, idle, spot
from cfn_chainermn.template.parameters import Conditions, add_conditions, add_parameters


def _inputs() -> tuple[Template, Any]:
    t = Template()
    return t, add_conditions(t, add_parameters(t, ClusterConfig()))


def test_a_misspelt_parameter_fails_when_the_template_is_built() -> None:
    _, inputs = _inputs()
    assert inputs.ref("KeyName").to_dict() == {"Ref": "KeyName"}
    with pytest.raises(KeyError, match="KeyNmae"):
        inputs.ref("KeyNmae")


def test_every_condition_the_builders_can_name_is_in_the_template(default_dict: dict[str, Any]) -> None:
    t, inputs = _inputs()
    names = [getattr(inputs.cond, f.name) for f in dataclasses.fields(Conditions)]
    assert sorted(names) == sorted(t.conditions)
    # compute adds EFA's, idle.py and spot.py their own
    assert sorted(default_dict["Conditions"]) == sorted(names + efa.condition_names() + list(idle.CONDITIONS)
                                                        + list(spot.CONDITIONS))
    assert list(inputs.params) == list(template_parameters(ClusterConfig())) == list(default_dict["Parameters"])
