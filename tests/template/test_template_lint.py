"""cfn-lint (AWS's resource specification, condition-aware, informational checks included)
on the released templates and every variant; and proof that it can fail."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from template_support import lint

from cfn_chainermn.config.model import ClusterConfig
from cfn_chainermn.template import render

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["chainermn-cluster.yaml", "chainermn-cluster.json"])
def test_released_template_lints_clean(name: str) -> None:
    assert lint((ROOT / "templates" / name).read_text()) == []


def test_every_variant_lints_clean(variant_configs: dict[str, ClusterConfig]) -> None:
    problems = {name: lint(render(cfg, "compact")) for name, cfg in variant_configs.items() if name != "released"}
    assert problems == {key: [] for key in problems}


def test_lint_catches_a_broken_template(default_dict: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(default_dict))
    broken["Outputs"]["ClusterMasterPublicDNS"]["Value"] = {"Fn::GetAtt": ["ClusterMaster", "PublicDnsNam"]}
    broken["Resources"]["WorkerGroup"]["DependsOn"] = ["FileSystem"]  # conditional resource
    found = " ".join(lint(json.dumps(broken)))
    assert "E6101" in found and "PublicDnsNam" in found
    assert "E3005" in found
