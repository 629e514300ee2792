"""Random configurations give a cfn-lint-clean template or a ConfigError, never anything else.

cfn-lint checks each Default against its parameter's AllowedPattern/AllowedValues/range, so
this also proves that config validation and the template's constraints agree. Half the
examples are drawn from plausible settings (so templates really get linted), half from
anything-goes values (so the ConfigError path is exercised)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from template_support import lint

from cfn_chainermn.catalog.instance_types import INSTANCE_TYPES
from cfn_chainermn.config.model import build
from cfn_chainermn.errors import ConfigError
from cfn_chainermn.template import MAX_S3_BYTES, render

HEX = st.one_of(*(st.text("0123456789abcdef", min_size=n, max_size=n) for n in (8, 17)))  # as AWS issues ids
PINNED = f"cfn-chainermn==0.1.0 --hash=sha256:{'0123456789abcdef' * 4}"  # as agent_source index needs it
ASCII = st.text(st.characters(codec="ascii", exclude_categories=["Cc"]), max_size=12)


def ident(prefix: str, digits: st.SearchStrategy[str] = HEX) -> st.SearchStrategy[str]:
    return digits.map(lambda h: f"{prefix}-{h}")


@st.composite
def plausible(draw: st.DrawFn) -> dict[str, Any]:
    """Settings a user might write: every field valid on its own."""
    second = draw(st.integers(0, 255))
    network = draw(st.sampled_from(["new", "existing-vpc", "existing-subnet"]))
    net: dict[str, Any] = {"new": {"vpc_cidr": f"10.{second}.0.0/16", "subnet_cidr": f"10.{second}.4.0/22",
                                   "availability_zone": draw(st.sampled_from(["", "us-east-1c"]))},
                           "existing-vpc": {"vpc_id": draw(ident("vpc")), "route_table_id": draw(ident("rtb"))},
                           "existing-subnet": {"vpc_id": draw(ident("vpc")), "subnet_id": draw(ident("subnet"))}
                           }[network]
    mode = draw(st.sampled_from(["none", "new", "existing"]))
    efs: dict[str, Any] = {"mode": mode, "mount_point": draw(st.sampled_from(["/efs", "/shared/data"]))}
    if mode == "existing":
        efs |= {"file_system_id": draw(ident("fs")), "security_group_id": draw(ident("sg"))}
    elif mode == "new":
        efs |= draw(st.sampled_from([{"performance_mode": "maxIO", "throughput_mode": "bursting"},
                                     {"throughput_mode": "bursting"}, {}]))
    return {
        "instance_type": draw(st.sampled_from(list(INSTANCE_TYPES))),
        "worker_instance_type": draw(st.sampled_from(["", *INSTANCE_TYPES])),
        "workers": draw(st.integers(0, 256)),
        "key_name": draw(st.one_of(st.just(""), ASCII.filter(str.strip))),
        "ssh_cidr": draw(st.sampled_from(["", "203.0.113.7/32", "198.51.100.0/24"])),
        "spot_workers": draw(st.booleans()),
        "tenancy": draw(st.sampled_from(["default", "dedicated"])),
        "root_volume_size": draw(st.integers(8, 16384)),
        "ami": draw(st.one_of(st.just(""), ident("ami"))),
        "agent_index_url": draw(st.sampled_from(["", "https://pypi.example.org/simple"])),
        "network": net,
        "efs": efs,
        **draw(st.sampled_from([{}, {"agent_source": "ami"},
                                {"agent_source": "index", "agent_package": PINNED}])),
    }


anything: st.SearchStrategy[dict[str, Any]] = st.fixed_dictionaries({}, optional={
    "instance_type": st.sampled_from([*INSTANCE_TYPES, "p9.huge"]),
    "workers": st.integers(-2, 300),
    "ssh_cidr": st.sampled_from(["", "0.0.0.0/0", "10.0.0.0/33", "10.0.0.1/24", "203.0.113.7/32"]),
    "allow_ssh_from_anywhere": st.booleans(),
    "tenancy": st.sampled_from(["default", "host"]),
    "root_volume_size": st.integers(0, 20000),
    "agent_source": st.sampled_from(["template", "ami", "index", "pypi"]),
    "agent_package": st.one_of(ASCII, st.just(PINNED)),
    "agent_index_url": st.sampled_from(["", "http://insecure", "https://a b"]),
    "network": st.fixed_dictionaries({}, optional={
        "vpc_id": st.one_of(st.just(""), ident("vpc"), st.just("vpc-XYZ")),
        "subnet_id": ident("subnet", st.text("0123456789abcdef", min_size=7, max_size=18)),
        "vpc_cidr": st.sampled_from(["10.0.0.0/16", "10.0.0.0/8"]), "subnet_cidr": st.sampled_from(
            ["10.0.0.0/24", "192.168.0.0/24"]), "availability_zone": st.sampled_from(["us-east-1", "eu-west-3c"])}),
    "efs": st.fixed_dictionaries({}, optional={
        "mode": st.sampled_from(["none", "new", "existing", "maybe"]), "file_system_id": ident("fs"),
        "performance_mode": st.sampled_from(["generalPurpose", "maxIO"]),
        "throughput_mode": st.sampled_from(["elastic", "bursting"]),
        "mount_point": st.sampled_from(["/efs", "efs", "/usr", "/a b"])}),
})


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])  # each lint ~2 s
@given(st.one_of(plausible(), anything))
def test_random_config_gives_clean_template_or_config_error(data: dict[str, Any]) -> None:
    try:
        cfg = build(data)
    except ConfigError as exc:
        event("ConfigError")
        assert exc.problems and all(":" in p for p in exc.problems)
        return
    event("template linted")
    text = render(cfg, "compact")
    assert len(text.encode()) < MAX_S3_BYTES
    assert lint(text) == []
