"""`make demo`: the main workflow on embedded defaults, all on this machine.

1. render the console-ready template and lint it with cfn-lint;
2. against an AWS endpoint emulated on 127.0.0.1 (a moto server): stack create -> outputs -> delete;
3. a local cluster of sshd nodes on 127.0.0.x running the same node agent, a real ChainerMN
   training job streamed from it, then local down.

Every step is the real `cfn-chainermn` command a user would type; nothing leaves 127.0.0.0/8.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CLI = [str(BIN / "cfn-chainermn")]
WORK = ROOT / ".demo"


def demo_state_dir(*, create: bool = False) -> Path:
    """.demo/cluster, or (as root in a checkout other users cannot search, e.g. under /root) a
    root-owned folder outside it, where the cluster's user can reach it."""
    from cfn_chainermn.local import places

    return places.place(ROOT, ".demo/cluster", create=create)


def step(title: str) -> None:
    print(f"\n=== {title}", flush=True)


def run(*args: str, env: dict[str, str] | None = None, check: bool = True) -> int:
    shown = " ".join(a if " " not in a else repr(a) for a in args)
    print(f"$ cfn-chainermn {shown}", flush=True)
    rc = subprocess.call([*CLI, *args], env=env, cwd=ROOT)
    if check and rc != 0:
        print(f"demo: `cfn-chainermn {shown}` exited {rc}", file=sys.stderr)
        raise SystemExit(rc)
    return rc


def template_step() -> None:
    step("1. the cluster template (troposphere), checked with cfn-lint")
    out = WORK / "template.json"
    run("template", "--format", "json", "-o", str(out), "--workers", "3", "--instance-type", "p3.16xlarge")
    from cfnlint.api import ManualArgs, lint

    body = json.loads(out.read_text())
    matches = lint(out.read_text(), config=ManualArgs(regions=["us-east-1"]))
    print(f"template: {len(body['Parameters'])} parameters, {len(body['Resources'])} resources, "
          f"{out.stat().st_size} bytes; cfn-lint matches: {len(matches)}")
    for m in matches:
        print(f"  {m}")
    if matches:
        raise SystemExit(1)


def start_emulator(log: Path) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """scripts/aws_emulator.py in a process of its own, its output (moto's request tracebacks and
    warnings, which are not ours and not failures) in `log`; returns it and its ready line."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "aws_emulator.py"), "--key-name", "demo-key",
                             "--log", str(log)], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        rc = proc.wait()
        print(f"demo: the AWS emulator exited {rc} before it was ready; see {log}", file=sys.stderr)
        raise SystemExit(1)
    return proc, json.loads(line)


def aws_step() -> None:
    step("2. stack create -> outputs -> delete, against AWS emulated on 127.0.0.1 (moto)")
    # moto lacks the Deep Learning AMI's public SSM parameter, offers no p3 types, and cannot
    # delete a new VPC: the emulator seeds the parameter, and the demo uses g5 in its default VPC.
    log = WORK / "aws-emulator.log"
    server, net = start_emulator(log)
    home = Path(tempfile.mkdtemp(prefix="demo-aws-"))
    env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_REGION="us-east-1", AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL=net["url"],
               AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE=str(home / "config"),
               AWS_SHARED_CREDENTIALS_FILE=str(home / "credentials"))
    env.pop("AWS_PROFILE", None)
    try:
        print(f"(emulator on {net['url']}: key pair demo-key, default VPC {net['vpc_id']}; "
              f"its own output goes to {log.relative_to(ROOT)})")
        run("stack", "create", "demo", "--key-name", "demo-key", "--ssh-cidr", "127.0.0.1/32",
            "--workers", "2", "--instance-type", "g5.xlarge", "--vpc-id", net["vpc_id"],
            "--subnet-id", net["subnet_id"], "--yes", env=env)
        run("stack", "status", "demo", env=env)
        run("stack", "outputs", "demo", env=env)
        print("(moto assigns no public DNS names, so ClusterMasterPublicDNS is absent and SshCommand "
              "unresolved here; on AWS both name the master)")
        run("stack", "delete", "demo", "--yes", env=env)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)


def local_step() -> None:
    step("3. a local cluster of 3 sshd nodes, a real ChainerMN training job, then down")
    state = demo_state_dir(create=True)
    run("local", "up", "--workers", "2", "--state-dir", str(state))
    try:
        run("hostfile", "local", "--state-dir", str(state))
        run("job", "submit", "local", "--state-dir", str(state), "-n", "3", "-N", "1",
            "examples/train_mnist.py", "--", "--dataset", "digits", "--epoch", "5")
    finally:
        run("local", "down", "--state-dir", str(state), check=False)


def main() -> None:
    started = time.monotonic()
    WORK.mkdir(exist_ok=True)
    template_step()
    aws_step()
    local_step()
    print(f"\ndemo finished in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
