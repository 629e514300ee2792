"""DescribeInstanceTypes' answer read in the table's terms, and where it differs from the table."""

from __future__ import annotations

from typing import Any

from cfn_chainermn.catalog.instance_types import lookup
from cfn_chainermn.catalog.live import differences, from_description


def p5(cards: int = 32) -> dict[str, Any]:
    """p5.48xlarge as EC2 describes it (the fields preflight reads; shape per the EC2 API reference)."""
    return {"InstanceType": "p5.48xlarge", "VCpuInfo": {"DefaultVCpus": 192},
            "GpuInfo": {"Gpus": [{"Name": "H100", "Manufacturer": "NVIDIA", "Count": 8,
                                  "MemoryInfo": {"SizeInMiB": 81920}}]},
            "NetworkInfo": {"NetworkPerformance": "3200 Gigabit", "MaximumNetworkCards": 32, "EfaSupported": True,
                            "EfaInfo": {"MaximumEfaInterfaces": cards}}}


def test_a_described_type_reads_as_its_table_row() -> None:
    assert from_description(p5()) == lookup("p5.48xlarge")
    assert differences(from_description(p5())) == []


def test_a_type_without_efa_has_no_cards_whatever_else_it_says() -> None:
    g5 = {"InstanceType": "g5.xlarge", "VCpuInfo": {"DefaultVCpus": 4},
          "GpuInfo": {"Gpus": [{"Name": "A10G", "Manufacturer": "NVIDIA", "Count": 1}]},
          "NetworkInfo": {"NetworkPerformance": "Up to 10 Gigabit", "MaximumNetworkCards": 1, "EfaSupported": False}}
    assert from_description(g5) == lookup("g5.xlarge")


def test_what_ec2_says_beyond_the_table_is_named() -> None:
    assert differences(from_description(p5(cards=16))) == ["p5.48xlarge: EC2 says EFA interfaces 16, the table 32"]
    newer = from_description({"InstanceType": "p9.huge", "GpuInfo": {"Gpus": [{"Name": "X1", "Count": 8}]},
                              "NetworkInfo": {"NetworkPerformance": "High"}})
    assert (newer.gpus, newer.gpu_model, newer.network_gbps, newer.usd_per_hour) == (8, "X1", 0.0, 0.0)
    assert differences(newer) == ["p9.huge is not in this release's table"]
