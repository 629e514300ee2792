"""Config loading and validation: every message names the field and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from cfn_chainermn.config.model import ClusterConfig, build, load, merge, validate, without_stale
from cfn_chainermn.config.settings import find, settings
from cfn_chainermn.errors import ConfigError


def problems(**data: object) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        build(data)
    return exc.value.problems


def test_defaults_are_valid() -> None:
    cfg = build({})
    assert cfg.instance_type == "g6.xlarge"
    assert cfg.worker_type == "g6.xlarge"
    assert cfg.efs.mount_point == "/efs"
    assert validate(cfg) == []


def test_stack_needs_key_and_cidr() -> None:
    with pytest.raises(ConfigError) as exc:
        build({}, for_stack=True)
    text = str(exc.value)
    assert "key_name: required" in text and "--key-name" in text
    assert "ssh_cidr: required" in text and "--ssh-cidr" in text


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"name": "9lives"}, "name: '9lives' is not a CloudFormation stack name"),
        ({"name": "a_b"}, "name: 'a_b'"),
        ({"name": "x" * 129}, "name:"),
        ({"region": "mars-1"}, "region: 'mars-1' is not an AWS region"),
        ({"instance_type": "p9.huge"}, "instance_type: unknown instance type 'p9.huge'"),
        ({"worker_instance_type": "t2.micro"}, "worker_instance_type: unknown instance type"),
        ({"workers": -1}, "workers: -1 is out of range; give 0 to 256"),
        ({"workers": 10000}, "workers: 10000 is out of range"),
        ({"workers": "many"}, "workers: expected a whole number"),
        ({"ssh_cidr": "1.2.3.4/33"}, "ssh_cidr: '1.2.3.4/33' is not an IPv4 network"),
        ({"ssh_cidr": "1.2.3.4/24"}, "host bits zero"),
        ({"ssh_cidr": "0.0.0.0/0"}, "--allow-ssh-from-anywhere"),
        ({"network": {"vpc_cidr": "10.0.0.0/16", "subnet_cidr": "10.1.0.0/24"}},
         "network.subnet_cidr: 10.1.0.0/24 is outside network.vpc_cidr 10.0.0.0/16"),
        ({"network": {"subnet_cidr": "10.0.0.0/30"}}, "network.subnet_cidr: prefix /30"),
        ({"network": {"subnet_id": "subnet-0123456789abcdef0"}}, "network.vpc_id: required"),
        ({"network": {"vpc_id": "vpc-0123456789abcdef0"}}, "network.route_table_id: required"),
        ({"network": {"vpc_id": "vpc-1"}}, "network.vpc_id: 'vpc-1' is not a valid id"),
        ({"network": {"availability_zone": "us-east-1"}}, "network.availability_zone"),
        ({"network": {"nope": 1}}, "network.nope: unknown field"),
        ({"network": "x"}, "network: expected a mapping"),
        ({"efs": {"mode": "maybe"}}, "efs.mode: 'maybe' is not allowed"),
        ({"efs": {"mode": "existing", "file_system_id": "fs-0123456789abcdef0"}},
         "efs.security_group_id: required with an existing EFS"),
        ({"efs": {"mode": "existing"}}, "efs.file_system_id: required"),
        ({"efs": {"mount_point": "relative"}}, "efs.mount_point: 'relative' is not usable"),
        ({"efs": {"mount_point": "/etc"}}, "efs.mount_point"),
        ({"efs": {"performance_mode": "maxIO"}}, "elastic does not work with maxIO"),
        ({"ami": "ami-xyz"}, "ami: 'ami-xyz' is not a valid id"),
        ({"root_volume_size": 2}, "root_volume_size: 2 GiB is out of range"),
        ({"tenancy": "host"}, "tenancy: 'host' is not allowed"),
        ({"tags": {"aws:x": "1"}}, "tags: key 'aws:x' is invalid"),
        ({"tags": ["a"]}, "tags: expected a mapping"),
        ({"spot_workers": "sometimes"}, "spot_workers: expected true or false"),
        ({"agent_package": "x; rm -rf /"}, "agent_package:"),
        ({"agent_source": "pypi"}, "agent_source: 'pypi' is not allowed; choose one of template, ami, index"),
        # a node installs this project from an index only pinned by hash: a name alone is not enough
        ({"agent_source": "index", "agent_package": "cfn-chainermn==0.1.0"},
         "agent_package: give cfn-chainermn==VERSION --hash=sha256:<64 hex digits>"),
        ({"agent_package": f"cfn-chainermn==0.1.0 --hash=sha256:{'0' * 64}"},
         "agent_package: only used with agent_source index (it is template); drop it"),
        ({"agent_index_url": "http://insecure"}, "agent_index_url: give an https://"),
        ({"colour": "red"}, "colour: unknown field"),
        ({"key_name": "k\u00e9y"}, "key_name: must be 1-255 printable ASCII characters"),
        ({"network": {"vpc_id": "vpc-0123456789abcdef0", "subnet_id": "subnet-x"}},
         "network.subnet_id: 'subnet-x' is not a valid id"),
        ({"network": {"vpc_id": "vpc-0123456789abcdef0", "route_table_id": "rtb-1"}},
         "network.route_table_id: 'rtb-1' is not a valid id"),
        ({"efs": {"mode": "existing", "file_system_id": "fs-0123456789abcdef0", "security_group_id": "sg-1"}},
         "efs.security_group_id: 'sg-1' is not a valid id"),
        ({"efs": {"performance_mode": "fast"}}, "efs.performance_mode: choose one of generalPurpose, maxIO"),
        ({"efs": {"throughput_mode": "max"}}, "efs.throughput_mode: choose one of elastic, bursting"),
        ({"ami_ssm_parameter": "no-slash"}, "ami_ssm_parameter: must be an SSM parameter path"),
        ({"tags": {"team": "x" * 257}}, "tags.team: value is longer than 256 characters"),
        ({"tags": {f"t{i}": "v" for i in range(41)}}, "tags: more than 40 tags"),
    ],
)
def test_each_problem_names_its_field(data: dict[str, object], expected: str) -> None:
    found = problems(**data)
    assert any(expected in p for p in found), found


def test_index_needs_a_pinned_package_for_a_stack_not_for_flags_alone() -> None:
    """`stack update --agent-source index` may take the stack's own pin; a stack's config may not lack it."""
    with pytest.raises(ConfigError) as exc:
        build({"key_name": "k", "ssh_cidr": "203.0.113.7/32", "agent_source": "index"}, for_stack=True)
    assert exc.value.problems == ["agent_package: agent_source index needs it: cfn-chainermn==VERSION "
                                  "--hash=sha256:<64 hex digits>"]
    assert build({"agent_source": "index"}).agent_source == "index"


def test_every_problem_is_reported_at_once() -> None:
    found = problems(name="_", workers=-1, ssh_cidr="nope", tenancy="x")
    assert [p.split(":")[0] for p in found] == ["name", "workers", "ssh_cidr", "tenancy"]


def test_ssh_from_anywhere_needs_opt_in() -> None:
    cfg = build({"ssh_cidr": "0.0.0.0/0", "allow_ssh_from_anywhere": True})
    assert cfg.ssh_cidr == "0.0.0.0/0"


FIX = ("give your own address range (for example 203.0.113.7/32) or set allow_ssh_from_anywhere: true "
       "(--allow-ssh-from-anywhere)")


@pytest.mark.parametrize(("cidr", "reach"), [
    ("0.0.0.0/0", "the whole internet"), ("0.0.0.0/1", "a large part of the internet"),
    ("128.0.0.0/1", "a large part of the internet"), ("64.0.0.0/2", "a large part of the internet"),
    ("8.0.0.0/7", "a large part of the internet"),
])
def test_ssh_wider_than_a_slash_8_needs_opt_in(cidr: str, reach: str) -> None:
    assert problems(ssh_cidr=cidr) == [f"ssh_cidr: {cidr} opens SSH to {reach}; {FIX}"]
    assert build({"ssh_cidr": cidr, "allow_ssh_from_anywhere": True}).ssh_cidr == cidr


@pytest.mark.parametrize("cidr", ["10.0.0.0/8", "203.0.113.7/32", "198.51.100.0/24"])
def test_ssh_from_a_slash_8_or_narrower_needs_no_opt_in(cidr: str) -> None:
    assert build({"ssh_cidr": cidr}).ssh_cidr == cidr


OWN_FOLDER = "give a folder of its own such as /efs or /mnt/efs"
INSIDE_OK = "(or one inside /media, /mnt, /srv)"
HOME = "where the mount would hide a user's home (the cluster user's ~/.ssh, or an image user's who can sudo) " \
       "and hand it to the cluster user"


def _inside(path: str, top: str) -> str:
    return f"{path} is inside the system folder /{top}, root's software's own; {OWN_FOLDER} {INSIDE_OK}"


@pytest.mark.parametrize(("mount_point", "message"), [
    ("/opt", f"/opt is a system folder; {OWN_FOLDER}"),
    ("/bin", f"/bin is a system folder; {OWN_FOLDER}"),
    ("/boot", f"/boot is a system folder; {OWN_FOLDER}"),
    ("/", f"/ is a system folder; {OWN_FOLDER}"),
    ("/mnt", f"/mnt is a system folder; {OWN_FOLDER}"),
    ("/home", f"/home is a system folder; {OWN_FOLDER}"),
    ("/etc/efs", _inside("/etc/efs", "etc")),
    ("/usr/local/share", _inside("/usr/local/share", "usr")),
    ("/proc/x", _inside("/proc/x", "proc")),
    ("/var/run", _inside("/var/run", "var")),  # a link to /run
    # writable by every user, like /tmp: a link planted on the way would take root's mkdir, mount, chown
    ("/var/tmp/x/efs", _inside("/var/tmp/x/efs", "var")),
    # root's software's own: handed to the cluster user, they could plant what root reads there (review 4)
    ("/var/lib/cfn-chainermn", _inside("/var/lib/cfn-chainermn", "var")),  # idle.json, state.json
    ("/var/log/cfn-chainermn", _inside("/var/log/cfn-chainermn", "var")),
    ("/etc/cfn-chainermn", _inside("/etc/cfn-chainermn", "etc")),  # agent.json
    ("/opt/cfn-chainermn", _inside("/opt/cfn-chainermn", "opt")),  # the agent's code
    ("/opt/data", _inside("/opt/data", "opt")),
    ("/root/.ssh", _inside("/root/.ssh", "root")),
    ("/var/spool/cron", _inside("/var/spool/cron", "var")),
    ("/var/lib", _inside("/var/lib", "var")),
    ("/var/efs", _inside("/var/efs", "var")),
    ("/home/chainer", f"/home/chainer is in /home, {HOME}; {OWN_FOLDER}"),
    ("/home/chainer/efs", f"/home/chainer/efs is in /home, {HOME}; {OWN_FOLDER}"),
    ("/home/ubuntu", f"/home/ubuntu is in /home, {HOME}; {OWN_FOLDER}"),  # a sudoer's ~/.ssh
    ("/efs/../etc", "'/efs/../etc' has an empty, '.' or '..' part; write the folder plainly, such as /efs or /mnt/efs"),
    ("/efs/./x", "'/efs/./x' has an empty, '.' or '..' part; write the folder plainly, such as /efs or /mnt/efs"),
    ("//efs", "'//efs' has an empty, '.' or '..' part; write the folder plainly, such as /efs or /mnt/efs"),
    ("efs", "'efs' is not usable; give an absolute path of at most 101 characters, made of letters, digits, "
            "'.', '_' and '-', such as /efs or /mnt/efs"),
])
def test_mount_point_is_a_folder_of_its_own(mount_point: str, message: str) -> None:
    assert problems(efs={"mount_point": mount_point}) == [f"efs.mount_point: {message}"]


@pytest.mark.parametrize("mount_point", ["/efs", "/mnt/efs", "/shared", "/data", "/shared/data", "/srv/nfs",
                                         "/media/x"])
def test_mount_points_of_their_own_are_fine(mount_point: str) -> None:
    assert build({"efs": {"mount_point": mount_point}}).efs.mount_point == mount_point


@pytest.mark.parametrize(("data", "types"), [
    ({}, ("g6.xlarge",)),
    ({"instance_type": "p4d.24xlarge", "worker_instance_type": "g5.xlarge"}, ("p4d.24xlarge", "g5.xlarge")),
    ({"instance_type": "p4d.24xlarge", "worker_instance_type": "g5.xlarge", "workers": 0}, ("p4d.24xlarge",)),
    ({"instance_type": "g5.xlarge", "worker_instance_type": "g5.xlarge", "workers": 3}, ("g5.xlarge",)),
])
def test_instance_types_are_those_that_run(data: dict[str, object], types: tuple[str, ...]) -> None:
    assert build(data).instance_types == types


def test_existing_subnet_skips_cidr_checks() -> None:
    cfg = build({"network": {"vpc_id": "vpc-0123456789abcdef0",
                             "subnet_id": "subnet-0123456789abcdef0", "subnet_cidr": "bogus"}})
    assert cfg.network.mode == "existing-subnet"


def test_file_then_flags(tmp_path: Path) -> None:
    f = tmp_path / "cluster.yaml"
    f.write_text("name: demo\nworkers: 3\ntags: {team: ml}\nefs: {mode: none}\n")
    cfg = load(f, {"workers": 5, "tags": {"cost": "x"}, "efs.mount_point": "/shared"})
    assert isinstance(cfg, ClusterConfig)
    assert (cfg.name, cfg.workers, cfg.efs.mode, cfg.efs.mount_point) == ("demo", 5, "none", "/shared")
    assert dict(cfg.tags) == {"team": "ml", "cost": "x"}


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"line \d+ is not valid YAML"):
        load(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load(listy)


def test_a_yaml_alias_bomb_is_refused_in_one_short_line(tmp_path: Path) -> None:
    """400 bytes of nested aliases once made a 312 MB error message (1.8 GB of memory)."""
    levels = ["a: &a [" + ",".join(['"lol"'] * 9) + "]"]
    for prev, cur in zip("abcdef", "bcdefg", strict=True):
        levels.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join([*levels, "workers: [" + ",".join(["*g"] * 9) + "]"]) + "\n")
    assert len(bomb.read_bytes()) < 500
    with pytest.raises(ConfigError) as info:
        load(bomb)
    assert str(info.value) == f"--config: {bomb} line 2: YAML aliases (*name) are not supported; write the value out"


def test_an_anchor_without_aliases_still_loads(tmp_path: Path) -> None:
    f = tmp_path / "cluster.yaml"
    f.write_text("name: &n demo\nworkers: 3\n")
    assert (load(f).name, load(f).workers) == ("demo", 3)


def test_merge_ignores_unset_flags() -> None:
    assert merge({"workers": 2}, {"workers": None, "efs.mode": "none"}) == {
        "workers": 2, "efs": {"mode": "none"}}


def test_example_config_is_valid() -> None:
    root = Path(__file__).resolve().parents[2]
    cfg = load(root / "examples" / "cluster.yaml", for_stack=True)
    assert cfg.workers >= 1 and cfg.key_name


def test_every_field_is_in_the_example_and_the_reference_table() -> None:
    """The example "with every field" and the config reference (docs/configuration.md, generated
    from the settings table) stay complete as fields are added."""
    import dataclasses

    from cfn_chainermn.config.model import ClusterConfig
    from cfn_chainermn.config.setting import sections

    root = Path(__file__).resolve().parents[2]
    example = (root / "examples" / "cluster.yaml").read_text()
    reference = (root / "docs" / "configuration.md").read_text()
    nested = sections(ClusterConfig)
    names = [f.name for f in dataclasses.fields(ClusterConfig) if f.name not in nested]
    names += [f"{section}.{f.name}" for section, cls in nested.items() for f in dataclasses.fields(cls)]
    for name in names:
        assert f"| `{name}` |" in reference, f"docs/configuration.md lacks {name}"
        assert f"{name.rsplit('.', 1)[-1]}:" in example, f"examples/cluster.yaml lacks {name}"


@pytest.mark.parametrize(("cidr", "written"), [("203.0.113.7/032", "203.0.113.7/32"), ("10.0.0.0/08", "10.0.0.0/8")])
def test_a_cidr_python_reads_but_aws_does_not_is_refused_with_its_plain_form(cidr: str, written: str) -> None:
    """The template's pattern (and AWS) refuse a zero-padded prefix; say how to write it."""
    assert problems(ssh_cidr=cidr, allow_ssh_from_anywhere=True) == [f"ssh_cidr: write {cidr!r} as {written}"]


PIN = f"cfn-chainermn==0.1.0 --hash=sha256:{'0a' * 32}"
STACK = {"key_name": "k", "ssh_cidr": "203.0.113.7/32", "agent_source": "index", "agent_package": PIN}


@pytest.mark.parametrize(("given", "file", "source", "package"), [
    ({"agent_source": "template"}, {}, "template", ""),  # the flag leaves index: the pin goes with it
    ({}, {"agent_source": "ami"}, "ami", ""),  # so does a --config that does
    ({"agent_source": "index"}, {}, "index", PIN),  # index again: the stack's pin completes it
    ({"workers": 3}, {}, "index", PIN),  # agent_source not given: kept
    ({"agent_source": "index", "agent_package": PIN.replace("0a", "0b")}, {}, "index", PIN.replace("0a", "0b")),
], ids=["flag-leaves-index", "file-leaves-index", "index-again", "untouched", "both-given"])
def test_a_stacks_value_goes_when_the_setting_it_depends_on_changes(
        tmp_path: Path, given: dict[str, object], file: dict[str, object], source: str, package: str) -> None:
    """`stack update`'s merge: the stack's settings under the file and the flags, less a value kept
    for a setting that is given another value (agent_package depends_on agent_source)."""
    f = tmp_path / "cluster.yaml"
    f.write_text("".join(f"{k}: {v}\n" for k, v in file.items()))
    cfg = load(f, given, for_stack=True, base=STACK)
    assert (cfg.agent_source, cfg.agent_package) == (source, package)


def test_every_dependent_setting_is_dropped_with_its_parents_change_and_only_then() -> None:
    """The rule over the whole table, so the next declared pair needs no code of its own: each
    `depends_on` names a setting; a new value of it drops the stack's dependent value, the same
    value (as the stack's parameters spell it, or as the default) keeps it."""
    dependents = [e for e in settings() if e.setting.depends_on]
    assert dependents, "no setting declares depends_on: the rule below tests nothing"
    for entry in dependents:
        parent = find(entry.setting.depends_on)
        old = parent.default
        new = next(c for c in parent.setting.choices if c != old) if parent.setting.choices else f"{old}x"
        base = merge({}, {parent.path: str(old), entry.path: "kept"})
        assert _at(without_stale(base, merge({}, {parent.path: new})), entry.path) is None, entry.path
        assert _at(without_stale(base, merge({}, {parent.path: old})), entry.path) == "kept", entry.path
        assert _at(without_stale({entry.path: "kept"}, merge({}, {parent.path: old})), entry.path) == "kept"
        given_too = merge({}, {parent.path: new, entry.path: "new"})
        assert _at(without_stale(base, given_too), entry.path) == "kept"  # left for the flag to override


def test_a_dependent_in_a_section_is_dropped_from_its_section(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dotted paths on both sides: a dependent under efs: whose parent is efs.mode."""
    import dataclasses

    from cfn_chainermn.config import model

    mode = find("efs.mode")
    dependent = dataclasses.replace(find("efs.file_system_id"),
                                    setting=dataclasses.replace(find("efs.file_system_id").setting,
                                                                depends_on="efs.mode"))
    monkeypatch.setattr(model, "settings", lambda: (mode, dependent))
    base = {"efs.mode": "existing", "efs.file_system_id": "fs-0123456789abcdef0", "workers": "2"}
    assert without_stale(base, {"efs": {"mode": "none"}}) == {"efs": {"mode": "existing"}, "workers": "2"}
    assert without_stale(base, {"efs": {"mode": "existing"}}) == merge({}, base)


def _at(data: dict[str, object], path: str) -> object:
    for part in path.split("."):
        data = data.get(part) if isinstance(data, dict) else None  # type: ignore[assignment]
    return data
