"""A node booted from the released template, on the emulator, with no index holding this project.

The stack is created on moto from templates/chainermn-cluster.yaml (through a TemplateURL, as the
console stores an upload), only KeyName and SshCidr given. The master's UserData (as moto
rendered it) runs under the host's python3; pip may use no index at all (PIP_NO_INDEX, the
agent's dependencies in a local mirror that does not hold cfn-chainermn); IMDS is the stand-in;
CloudFormation is moto behind a front that checks signatures and answers SignalResource. Then
the agent that UserData installed boots the node (under a test root) to ready.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.credentials import Credentials
from cfn_front import CfnFront
from imds_stand_in import ImdsStandIn

from cfn_chainermn import __version__
from cfn_chainermn.config.settings import DEFAULT_AMI_SSM_PARAMETER as DLAMI_PARAMETER
from cfn_chainermn.template.agent_bundle import lock_lines

ROOT = Path(__file__).resolve().parents[2]
WHEELHOUSE = ROOT / ".cache" / "agent-wheelhouse"
MOTO_AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
CREDS = {"AccessKeyId": "AKIDNODE", "SecretAccessKey": "node-secret", "Token": "node-token"}
pytestmark = pytest.mark.slow


def _released_stack(moto: Any) -> tuple[dict[str, str], Any]:
    kw = {"endpoint_url": moto.url, "region_name": "us-east-1"}
    ec2, cfn, s3 = boto3.client("ec2", **kw), boto3.client("cloudformation", **kw), boto3.client("s3", **kw)
    ec2.create_key_pair(KeyName="k")
    s3.create_bucket(Bucket="uploads")
    released = (ROOT / "templates/chainermn-cluster.yaml").read_text()
    # moto resolves every SSM-typed parameter's Default, even one a value is given for, and lacks the
    # Deep Learning AMI's public parameter: that one Default is the only byte changed.
    default = f"    Default: {DLAMI_PARAMETER}\n"
    assert released.count(default) == 1
    s3.put_object(Bucket="uploads", Key="chainermn-cluster.yaml",
                  Body=released.replace(default, f"    Default: {MOTO_AMI_PARAMETER}\n").encode())
    cfn.create_stack(StackName="demo", TemplateURL="https://uploads.s3.amazonaws.com/chainermn-cluster.yaml",
                     Capabilities=["CAPABILITY_IAM"], Parameters=[
                         {"ParameterKey": "KeyName", "ParameterValue": "k"},
                         {"ParameterKey": "SshCidr", "ParameterValue": "203.0.113.7/32"}])
    cfn.get_waiter("stack_create_complete").wait(StackName="demo", WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    outputs = {o["OutputKey"]: o["OutputValue"] for o in cfn.describe_stacks(StackName="demo")["Stacks"][0]["Outputs"]}
    return outputs, ec2


def test_node_from_released_template_boots_with_no_index_holding_this_project(moto: Any, tmp_path: Path) -> None:
    assert WHEELHOUSE.is_dir(), "run `make install`: it downloads the agent's pinned dependencies"
    assert not list(WHEELHOUSE.glob("cfn_chainermn*")), "the mirror must not hold this project"
    outputs, ec2 = _released_stack(moto)
    master = ec2.describe_instances(InstanceIds=[outputs["ClusterMasterInstanceId"]])["Reservations"][0][
        "Instances"][0]
    user_data = base64.b64decode(ec2.describe_instance_attribute(
        InstanceId=master["InstanceId"], Attribute="userData")["UserData"]["Value"]).decode()
    assert user_data.startswith("#!/usr/bin/python3\n") and '"stack": "demo"' in user_data

    front = CfnFront(Credentials(CREDS["AccessKeyId"], CREDS["SecretAccessKey"], CREDS["Token"]), moto_url=moto.url)
    subnet = ec2.describe_subnets(SubnetIds=[master["SubnetId"]])["Subnets"][0]
    mac = "0a:00:00:00:00:01"
    imds = ImdsStandIn({
        "instance-id": master["InstanceId"], "local-ipv4": master["PrivateIpAddress"],
        "placement/region": "us-east-1", "instance-type": master["InstanceType"], "mac": mac,
        f"network/interfaces/macs/{mac}/subnet-ipv4-cidr-block": subnet["CidrBlock"],
        "iam/security-credentials/": "MasterRole", "iam/security-credentials/MasterRole": json.dumps(CREDS)})
    home = tmp_path / "opt"
    try:
        (tmp_path / "user-data").write_text(user_data)
        env = {"PATH": "/usr/bin:/bin", "CFN_CHAINERMN_AGENT_HOME": str(home), "CFN_CHAINERMN_IMDS_WAIT": "10",
               "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url, "AWS_ENDPOINT_URL": front.url,
               "PIP_CONFIG_FILE": "/dev/null", "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(WHEELHOUSE)}
        proc = subprocess.run(["/usr/bin/python3", str(tmp_path / "user-data"), "--install-only"], env=env,
                              capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        agent = Path(proc.stdout.strip().splitlines()[-1])
        assert agent.parent.parent.parent == home and agent.name == "cfn-chainermn"
        assert "GetTemplate" in front.actions and front.signals == []

        venv_python = agent.with_name("python")
        version = subprocess.run([str(venv_python), "-c", "import sys; print(sys.version_info >= (3, 10))"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        assert version == "True"
        frozen = subprocess.run([str(venv_python), "-m", "pip", "list", "--format", "freeze", "--exclude", "pip",
                                 "--exclude", "setuptools"], capture_output=True, text=True, check=True,
                                env={"PIP_CONFIG_FILE": "/dev/null"}).stdout.split()
        pins = sorted(line.split()[0].lower().replace("_", "-") for line in lock_lines())
        assert sorted(f.lower().replace("_", "-") for f in frozen) == sorted([*pins, f"cfn-chainermn=={__version__}"])
        installed = subprocess.run([str(venv_python), "-c", "import cfn_chainermn, os; "
                                    "print(os.path.dirname(cfn_chainermn.__file__))"],
                                   capture_output=True, text=True, check=True).stdout.strip()
        for rel in ("node/agent.py", "template/bootstrap.py", "jobs/sh/submit.sh"):
            assert (Path(installed) / rel).read_bytes() == (ROOT / "cfn_chainermn" / rel).read_bytes()

        # A second boot (a reboot) reuses the venv: no template read, no pip.
        actions = len(front.actions)
        again = subprocess.run(["/usr/bin/python3", str(tmp_path / "user-data"), "--install-only"], env=env,
                               capture_output=True, text=True, timeout=60, check=False)
        assert again.returncode == 0 and again.stdout.strip().splitlines()[-1] == str(agent)
        assert len(front.actions) == actions

        # The agent UserData installed boots the node (under a test root) to ready and signals SUCCESS.
        root = tmp_path / "root"
        (root / "etc/ssh").mkdir(parents=True)
        (root / "usr/sbin").mkdir(parents=True)
        for name in ("iptables", "ip6tables"):
            (root / "usr/sbin" / name).write_text("#!/bin/sh\n")
            (root / "usr/sbin" / name).chmod(0o755)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(root / "etc/ssh/ssh_host_ed25519_key")], check=True)
        boot_env = {"PATH": "/usr/bin:/bin", "AWS_ACCESS_KEY_ID": CREDS["AccessKeyId"],
                    "AWS_SECRET_ACCESS_KEY": CREDS["SecretAccessKey"], "AWS_SESSION_TOKEN": CREDS["Token"],
                    "AWS_ENDPOINT_URL": moto.url, "AWS_ENDPOINT_URL_CLOUDFORMATION": front.url,
                    "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
        boot = subprocess.run([str(agent), "node", "boot", "--root", str(root), "--role", "master", "--stack", "demo",
                               "--region", "us-east-1", "--bucket", outputs["KeyBucketName"], "--signal-resource",
                               "ClusterMaster", "--mount-point", "/efs", "--imds-url", imds.url, "--imds-wait", "10"],
                              env=boot_env, capture_output=True, text=True, timeout=120, check=False)
        assert boot.returncode == 0, boot.stdout + boot.stderr
        assert [(s["LogicalResourceId"], s["UniqueId"], s["Status"]) for s in front.signals] == [
            ("ClusterMaster", master["InstanceId"], "SUCCESS")]
        assert (root / "home/chainer/hostfile").read_text().startswith(master["PrivateIpAddress"])
    finally:
        front.close()
        imds.close()
