"""The instance table feeds slots, validation and cost: keep it complete and consistent."""

from __future__ import annotations

import pytest

from cfn_chainermn.catalog.instance_types import (
    INSTANCE_TYPES,
    PRICES_AS_OF,
    VCPU_QUOTA_CODES,
    estimate,
    gpus_of,
    lookup,
)

REQUIRED = ["p3.2xlarge", "p3.8xlarge", "p3.16xlarge", "p3dn.24xlarge", "p4d.24xlarge", "p5.48xlarge"]


def test_required_types_and_families_present() -> None:
    for name in REQUIRED:
        assert name in INSTANCE_TYPES
    families = {t.family for t in INSTANCE_TYPES.values()}
    assert {"g4dn", "g5", "g6"} <= families


def test_rows_are_sane() -> None:
    for t in INSTANCE_TYPES.values():
        assert t.gpus in (1, 2, 4, 8), t
        assert t.vcpus >= 4 and t.usd_per_hour >= 0 and t.network_gbps > 0
        assert (t.quota_class, False) in VCPU_QUOTA_CODES and (t.quota_class, True) in VCPU_QUOTA_CODES
    assert lookup("p4d.24xlarge").efa and not lookup("p3.16xlarge").efa


def test_slots_follow_gpus() -> None:
    assert gpus_of("p3.16xlarge") == 8
    assert gpus_of("g5.12xlarge") == 4
    assert gpus_of("local", default=2) == 2


def test_unknown_type_names_known_ones() -> None:
    with pytest.raises(KeyError, match=r"known: p3\.2xlarge"):
        lookup("p9.huge")


def test_estimate_reference_cluster() -> None:
    """The blog's cluster: 4 x p3.16xlarge = 32 V100."""
    est = estimate("p3.16xlarge", "p3.16xlarge", 3)
    assert (est.nodes, est.gpus) == (4, 32)
    assert est.usd_per_hour == pytest.approx(4 * 24.48)
    assert PRICES_AS_OF in est.describe() and "$97.92/h" in est.describe()


def test_cuda_floor_per_gpu() -> None:
    from cfn_chainermn.catalog.instance_types import INSTANCE_TYPES, MIN_CUDA, cuda_too_old, families_for_cuda

    assert {t.gpu_model for t in INSTANCE_TYPES.values()} <= set(MIN_CUDA)  # every GPU has a floor
    assert cuda_too_old("p4d.24xlarge", "11.0") is None and cuda_too_old("g5.xlarge", "11.1") is None
    assert cuda_too_old("g5.xlarge", "11.0") == "the A10G GPUs of g5.xlarge need CUDA 11.1 or newer"
    assert cuda_too_old("p5.48xlarge", "12.4") is None
    assert cuda_too_old("p5.48xlarge", "") is None and cuda_too_old("local", "9.0") is None  # unknown: no claim
    assert families_for_cuda("9.0") == ["p3", "p3dn"]
    assert families_for_cuda("12.4") == ["p3", "p3dn", "p4d", "p4de", "p5", "p5e", "p5en", "g4dn", "g5", "g6", "gr6",
                                         "g6e"]
    assert families_for_cuda("12.8")[-2:] == ["g7", "g7e"] and "p6-b300" in families_for_cuda("12.9")
    assert "p6-b200" in families_for_cuda("12.8") and cuda_too_old("p6-b200.48xlarge", "12.4") == (
        "the B200 GPUs of p6-b200.48xlarge need CUDA 12.8 or newer")
    assert families_for_cuda("junk") == []


def test_efa_types_name_their_network_cards() -> None:
    """EFA interfaces go on every network card: p5 has 32, p4d 4, one-card types 1; no EFA, no cards."""
    assert (lookup("p5.48xlarge").network_cards, lookup("p4d.24xlarge").network_cards) == (32, 4)
    assert lookup("g5.48xlarge").network_cards == 1 and lookup("p3.16xlarge").network_cards == 0
    assert all((t.network_cards > 0) == t.efa for t in INSTANCE_TYPES.values())
    assert (lookup("p3.16xlarge").arch, lookup("p3.16xlarge").min_cuda) == ("7.0", (9, 0))
    assert (lookup("p5en.48xlarge").network_cards, lookup("p6-b200.48xlarge").network_cards) == (16, 8)
    assert lookup("g6e.48xlarge").network_cards == 4 and lookup("g6e.4xlarge").network_cards == 0


def test_only_volta_needs_the_proprietary_driver() -> None:
    """NVIDIA's open kernel modules (the Base OSS AMI's) run Turing and newer; 580 was V100's last branch."""
    from cfn_chainermn.catalog.gpus import GPUS, driver_gap

    assert [m for m, g in GPUS.items() if not g.open_driver] == ["V100"]
    assert driver_gap("V100") == ("V100 (sm_70) needs NVIDIA's proprietary driver, branch 580 or older: the open "
                                  "kernel modules run Turing and newer only, and newer branches dropped it")
    assert driver_gap("T4") is None and driver_gap("unknown") is None


def test_an_unpriced_type_says_so_instead_of_a_wrong_sum() -> None:
    est = estimate("p5en.48xlarge", "p5en.48xlarge", 1)
    assert (est.gpus, est.unpriced) == (16, ("p5en.48xlarge",))
    assert est.describe() == ("2 nodes, 16 GPUs: no list price in the table for p5en.48xlarge; see the EC2 "
                              "On-Demand pricing page")
    assert estimate("p5.48xlarge", "p5en.48xlarge", 0).unpriced == ()  # no workers: their type never runs
