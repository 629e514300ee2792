"""Fixtures of the template tests: the variants' configs and the released template as data."""

from __future__ import annotations

import json
from typing import Any

import pytest
from template_support import VARIANTS, variant_config

from cfn_chainermn.config.model import ClusterConfig


@pytest.fixture(scope="session")
def variant_configs() -> dict[str, ClusterConfig]:
    return {name: variant_config(name) for name in VARIANTS}


@pytest.fixture(scope="session")
def default_dict() -> dict[str, Any]:
    """The released template as data (from its compact JSON, as stack create sends it)."""
    from cfn_chainermn.template import render

    data: dict[str, Any] = json.loads(render(ClusterConfig(), "compact"))
    return data
