"""A moto server on 127.0.0.1 that knows the Deep Learning AMI's public SSM parameter.

moto resolves every `AWS::SSM::Parameter::Value<...>` parameter of a template, its Default
included, through its SSM backend, and it refuses to create names under /aws/ through the
API (as AWS does). The released template's ImageSsmParameter defaults to the DLAMI's public
parameter, so moto needs that parameter in its backend, pointing at an AMI moto has: this
module runs moto's threaded server in-process and writes the parameter straight into the
backend. The template itself is never changed for the emulator.

moto also keeps the *resolved* AMI id as such a parameter's previous value, and resolves it
again on an update (UsePreviousValue), so an update of the stack looks up an SSM parameter
named after the AMI id. Real CloudFormation keeps the parameter name; to let `stack scale`
run against moto the seed also holds that parameter (`ami-...` -> itself).

For the same reason moto believes every SSM- or Number-typed parameter changed on an update
(it compares the resolved previous value with the raw new one), so it "modifies" the master
instance, and moto's AWS::EC2::Instance has no update handler: the master would silently drop
out of the stack and every later DescribeStacks would fail on its GetAtt outputs. An update
that does not change the instance's properties leaves it in place on AWS, so the server keeps
the instance too (`keep_instances_on_update`). Nothing else of moto is changed.

Run `python scripts/aws_emulator.py --port 5055 --key-name demo-key` to try the stack commands by hand
(`make demo` starts one the same way, with `--log`, so moto's own output stays out of the demo): once
ready it prints one JSON line {"url", "image", "key_name", "vpc_id", "subnet_id"}: a key pair
it created, and moto's default VPC with its us-east-1a subnet (a stack with a new VPC cannot
be deleted in moto: its SubnetRouteTableAssociation makes DeleteStack fail with
DependencyViolation, feasibility-aws.md §5). Tests use `SeededMoto`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import urllib.request
from datetime import datetime, timezone
from typing import Any

from cfn_chainermn.config.model import DEFAULT_AMI_SSM_PARAMETER

ACCOUNT = "123456789012"  # moto's default account


def demo_image(region: str) -> str:
    """An Ubuntu image from moto's built-in catalogue (the DLAMI is Ubuntu too)."""
    from moto.ec2.models import ec2_backends

    images = sorted(ec2_backends[ACCOUNT][region].describe_images(), key=lambda i: i.id)
    ubuntu = [i for i in images if "ubuntu" in (i.name or "").lower()]
    return str((ubuntu or images)[0].id)


def seed(region: str = "us-east-1", parameter: str = DEFAULT_AMI_SSM_PARAMETER) -> str:
    """Put `parameter` -> an existing AMI into moto's SSM backend; returns the AMI id."""
    from moto.ssm.models import Parameter, ssm_backends

    image = demo_image(region)
    backend: Any = ssm_backends[ACCOUNT][region]
    for name in (parameter, image):
        backend._parameters[name] = [Parameter(  # type: ignore[abstract]
            account_id=ACCOUNT, name=name, value=image, parameter_type="String",
            description="seeded by cfn-chainermn's tests", allowed_pattern=None, keyid=None,
            last_modified_date=datetime.now(timezone.utc), version=1, data_type="aws:ec2:image",
        )]
    return image


def keep_instances_on_update() -> None:
    """Give moto's EC2 instance model the no-op update it lacks (see the module docstring)."""
    from moto.ec2.models.instances import Instance

    if "update_from_cloudformation_json" in vars(Instance):
        return

    def update(cls: type, original_resource: Any, new_resource_name: str, cloudformation_json: Any,
               account_id: str, region_name: str) -> Any:
        return original_resource

    Instance.update_from_cloudformation_json = classmethod(update)  # type: ignore[method-assign,assignment]


class SeededMoto:
    """moto's ThreadedMotoServer in this process, reset and re-seeded on demand."""

    def __init__(self, port: int = 0, region: str = "us-east-1") -> None:
        """Port 0 (the default): the kernel picks a free one as the server binds, so no other
        process can take it between choosing and binding (moto would wait for ever then)."""
        from moto.server import ThreadedMotoServer

        self.region = region
        self.url = ""  # set by start()
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.image = ""

    def start(self) -> SeededMoto:
        keep_instances_on_update()
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        self.image = seed(self.region)
        return self

    def reset(self) -> str:
        req = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        urllib.request.urlopen(req, timeout=10).read()
        self.image = seed(self.region)
        return self.image

    def stop(self) -> None:
        self.server.stop()


def prepare(url: str, region: str, key_name: str) -> dict[str, str]:
    """A key pair, and the default VPC's subnet in the first AZ: what a demo stack needs."""
    import boto3

    ec2 = boto3.client("ec2", endpoint_url=url, region_name=region, aws_access_key_id="testing",
                       aws_secret_access_key="testing")
    ec2.create_key_pair(KeyName=key_name)
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]
    subnet = min(subnets, key=lambda s: s["AvailabilityZone"])["SubnetId"]
    return {"key_name": key_name, "vpc_id": vpc, "subnet_id": subnet}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 (default): a free port, reported as url")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--key-name", default="", help="also create this key pair and report the default VPC")
    parser.add_argument("--log", default="", help="the server's own output (request errors, moto's warnings) "
                        "goes to this file; stdout then carries only the ready line")
    args = parser.parse_args()
    if args.port:  # moto's server thread dies on a taken port and start() would wait for ever
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", args.port))
            except OSError as exc:
                parser.error(f"--port {args.port}: {exc.strerror}; pick another, or 0 for any free one")
    if args.log:
        log = os.open(args.log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        os.dup2(log, 2)  # tracebacks of requests moto does not implement, "No Moto CloudFormation support"
    server = SeededMoto(args.port, args.region).start()
    ready: dict[str, str] = {"url": server.url, "image": server.image, "ssm_parameter": DEFAULT_AMI_SSM_PARAMETER}
    if args.key_name:
        ready.update(prepare(server.url, args.region, args.key_name))
    print(json.dumps(ready), flush=True)
    if args.log:
        os.dup2(log, 1)  # whatever moto prints later goes to the log too

    def stop(*_: Any) -> None:
        server.stop()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        signal.pause()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
