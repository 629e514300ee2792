"""The released templates are exactly the generator's output, and a non-default variant is
pinned by a golden file, so any change to the template shows up as a reviewed diff."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from template_support import variant_config

from cfn_chainermn.config.model import ClusterConfig
from cfn_chainermn.template import render
from cfn_chainermn.template.agent_bundle import current
from cfn_chainermn.template.userdata import script

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_released_templates_are_current(fmt: str) -> None:
    released = (ROOT / "templates" / f"chainermn-cluster.{fmt}").read_text()
    assert released == render(ClusterConfig(), fmt), "templates/ is stale: run `make templates` and commit it"


def _without_agent(text: str) -> str:
    """The template with the agent's wheel and hash as placeholders: the golden pins the template,
    not every byte of the package (test_template_userdata.py pins that the wheel is this package's)."""
    bundle = current()
    return text.replace(bundle.encoded(), "<agent wheel>").replace(bundle.sha256, "<agent sha256>")


def test_variant_golden(golden: Any) -> None:
    golden("template/existing-subnet.yaml", _without_agent(render(variant_config("existing-subnet"), "yaml")))


def test_userdata_in_template_is_the_checked_script(default_dict: dict[str, Any]) -> None:
    master = default_dict["Resources"]["ClusterMaster"]["Properties"]["UserData"]["Fn::Base64"]["Fn::Sub"]
    worker = (default_dict["Resources"]["WorkerLaunchTemplate"]["Properties"]["LaunchTemplateData"]
              ["UserData"]["Fn::Base64"]["Fn::Sub"])
    assert master[0] == script("master") and worker[0] == script("worker")
    assert master[1]["EfsId"] == {"Fn::If": ["HasEfs", {"Fn::If": [
        "CreateEfs", {"Ref": "FileSystem"}, {"Ref": "EfsFileSystemId"}]}, ""]}
