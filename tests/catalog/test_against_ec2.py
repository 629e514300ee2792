"""The table against a second source: EC2's own DescribeInstanceTypes answers as moto ships them
(moto/ec2/resources/instance_types.json.gz, generated from the EC2 API; moto is pinned in
constraints.txt), read through live.from_description as preflight reads EC2."""

from __future__ import annotations

import dataclasses
import gzip
import json
from importlib import resources
from typing import Any

import pytest

from cfn_chainermn.catalog.instance_types import INSTANCE_TYPES
from cfn_chainermn.catalog.live import from_description


@pytest.fixture(scope="module")
def described() -> dict[str, Any]:
    import moto.ec2.resources as data

    with gzip.open(str(resources.files(data) / "instance_types.json.gz")) as f:
        return dict(json.load(f))


def test_every_row_is_what_ec2_describes(described: dict[str, Any]) -> None:
    """GPUs, GPU model, vCPUs, EFA, EFA interfaces (= network cards) and bandwidth, row by row."""
    rows = {name: row for name, row in INSTANCE_TYPES.items() if name in described}
    assert {name: dataclasses.replace(from_description(described[name]), usd_per_hour=row.usd_per_hour)
            for name, row in rows.items()} == rows


def test_only_p3_is_gone_from_ec2(described: dict[str, Any]) -> None:
    """AWS no longer describes p3 (p3dn stays); the table keeps the rows so preflight can say so."""
    assert sorted(set(INSTANCE_TYPES) - set(described)) == ["p3.16xlarge", "p3.2xlarge", "p3.8xlarge"]


def test_every_nvidia_gpu_ec2_describes_has_its_needs_in_the_catalogue(described: dict[str, Any]) -> None:
    """The GPU names EC2 uses for the table's types are the names gpus.py knows."""
    from cfn_chainermn.catalog.gpus import GPUS

    names = {g["Name"] for n in INSTANCE_TYPES if n in described for g in described[n]["GpuInfo"]["Gpus"]}
    assert names <= set(GPUS)
