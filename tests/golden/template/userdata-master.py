#!/usr/bin/python3
from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
import zipfile

CONFIG = {"role": "master", "stack": "demo", "region": "us-east-1", "url_suffix": "amazonaws.com",
          "signal": "ClusterMaster", "bucket": "demo-keybucket-1a2b3c4d5e6f", "mount_point": "/efs", "efs_id": "fs-0123456789abcdef0",
          "source": "template", "package": "", "index_url": "",
          "version": "0.1.0", "sha256": "0000000000000000000000000000000000000000000000000000000000000000"}
HOME = os.environ.get("CFN_CHAINERMN_AGENT_HOME", "/opt/cfn-chainermn")
BAKED = "venv/bin/cfn-chainermn"  # under HOME: what `ami build` bakes (ami/scripts/50-agent.sh)
BAKED_SHA = "venv/agent-wheel.sha256"  # the baked wheel's sha256, written by the same step
MARKER = "cfn-chainermn-agent-xz-base64:"  # template/agent_bundle.py
LOCK = "cfn_chainermn/node/agent-lock.txt"
PYTHONS = ("python3.13", "python3.12", "python3.11", "python3.10", "python3")
IMDS_WAIT_S = float(os.environ.get("CFN_CHAINERMN_IMDS_WAIT", "180"))  # as the agent's --imds-wait
CFN_VERSION = "2010-05-15"


class Failure(Exception):

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code


def log(msg: str) -> None:
    print("cfn-chainermn bootstrap: " + msg, flush=True)


def run(argv: list[str], code: str, what: str) -> str:
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except OSError as exc:  # no such program (an image without apt-get, say)
        raise Failure(code, f"{what} failed: {exc}") from None
    if proc.returncode != 0:
        tail = proc.stdout.strip().splitlines()[-3:]
        raise Failure(code, "{} failed (exit {}): {}".format(what, proc.returncode, " | ".join(tail)))
    return proc.stdout


class Imds:

    def __init__(self, base: str, wait: float = IMDS_WAIT_S) -> None:
        self.base, self.deadline, self._token = base.rstrip("/"), time.monotonic() + wait, ""

    def _open(self, req: urllib.request.Request) -> str:
        delay = 1.0
        while True:
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:
                    return str(resp.read().decode())
            except (urllib.error.URLError, OSError) as exc:
                if time.monotonic() + delay > self.deadline:
                    raise Failure("no-imds", f"instance metadata unreachable: {exc}") from None
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    def get(self, path: str) -> str:
        if not self._token:
            self._token = self._open(urllib.request.Request(
                self.base + "/latest/api/token", method="PUT",
                headers={"X-aws-ec2-metadata-token-ttl-seconds": "21600"}))
        return self._open(urllib.request.Request(
            self.base + "/latest/" + path, headers={"X-aws-ec2-metadata-token": self._token}))

    def credentials(self) -> dict[str, str]:
        role = self.get("meta-data/iam/security-credentials/").split()[0]
        creds: dict[str, str] = json.loads(self.get("meta-data/iam/security-credentials/" + role))
        return creds


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def sign(url: str, body: bytes, region: str, service: str, creds: dict[str, str],
         now: datetime.datetime) -> dict[str, str]:
    parts = urllib.parse.urlsplit(url)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    headers = {"content-type": "application/x-www-form-urlencoded; charset=utf-8", "host": parts.netloc,
               "x-amz-date": stamp}
    if creds.get("Token"):
        headers["x-amz-security-token"] = creds["Token"]
    names = sorted(headers)
    canonical = "\n".join(["POST", parts.path or "/", "", "".join(n + ":" + headers[n] + "\n" for n in names),
                           ";".join(names), hashlib.sha256(body).hexdigest()])
    scope = "/".join([stamp[:8], region, service, "aws4_request"])
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + creds["SecretAccessKey"]).encode()
    for part in (stamp[:8], region, service, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = "AWS4-HMAC-SHA256 Credential={}/{}, SignedHeaders={}, Signature={}".format(
        creds["AccessKeyId"], scope, ";".join(names), signature)
    return headers


class Cfn:

    def __init__(self, imds: Imds, region: str, url_suffix: str) -> None:
        self.imds, self.region = imds, region
        self.url = (os.environ.get("AWS_ENDPOINT_URL_CLOUDFORMATION") or os.environ.get("AWS_ENDPOINT_URL")
                    or f"https://cloudformation.{region}.{url_suffix}").rstrip("/") + "/"

    def call(self, action: str, params: dict[str, str]) -> ET.Element:
        body = urllib.parse.urlencode(dict(params, Action=action, Version=CFN_VERSION)).encode()
        headers = sign(self.url, body, self.region, "cloudformation", self.imds.credentials(),
                       datetime.datetime.now(datetime.timezone.utc))
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return ET.fromstring(resp.read())
        except ET.ParseError as exc:
            raise Failure("aws", f"{action}: the endpoint's answer is not XML ({exc})") from None
        except urllib.error.HTTPError as exc:
            text = exc.read().decode("utf-8", "replace")
            found = re.search(r"<Code>(.*?)</Code>.*?<Message>(.*?)</Message>", text, re.S)
            detail = f"{found.group(1)}: {found.group(2)[:160]}" if found else f"HTTP {exc.code} {exc.reason}"
            raise Failure("aws", f"{action}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise Failure("aws", f"{action}: {exc}") from None

    def template(self, stack: str) -> str:
        found = [el.text or "" for el in self.call("GetTemplate", {"StackName": stack}).iter()
                 if el.tag.endswith("TemplateBody")]  # any namespace ({*} needs Python 3.8)
        return found[0] if found else ""

    def signal(self, stack: str, resource: str, unique_id: str, status: str) -> None:
        self.call("SignalResource", {"StackName": stack, "LogicalResourceId": resource,
                                     "UniqueId": unique_id, "Status": status})


def _bundle_text(template: str) -> str:
    try:
        stack = [json.loads(template)]
    except ValueError:
        found = re.search(re.escape(MARKER) + r"[A-Za-z0-9+/=]{100,}", template)  # not the marker in UserData
        return found.group(0) if found else ""
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and item.startswith(MARKER) and len(item) > len(MARKER) + 100:
            return item
    return ""


def wheel_from(template: str, sha256: str) -> bytes:
    text = _bundle_text(template)
    if not text:
        raise Failure("no-agent", "the stack's template carries no agent (NodeAgent metadata); "
                                  "make it with `cfn-chainermn template`")
    try:
        wheel = lzma.decompress(base64.b64decode(text[len(MARKER):]))
    except (ValueError, lzma.LZMAError) as exc:
        raise Failure("agent-corrupt", f"the template's agent does not decode: {exc}") from None
    if hashlib.sha256(wheel).hexdigest() != sha256:
        raise Failure("agent-hash", "the template's agent is not the one this node's UserData names "
                                    "(sha256 differs): was the stack updated while this node booted?")
    return wheel


def choose_python() -> str:
    seen = []
    for name in PYTHONS:
        path = shutil.which(name)
        if not path:
            continue
        out = subprocess.run([path, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             stdout=subprocess.PIPE, text=True).stdout.strip()
        seen.append("{} is {}".format(name, out or "unusable"))
        if re.fullmatch(r"\d+\.\d+", out) and tuple(map(int, out.split("."))) >= (3, 10):
            return path
    raise Failure("no-python310", "the agent needs Python >= 3.10 and this image has none ({}): use the "
                                  "default image or one made by `cfn-chainermn ami build`".format(
                                      "; ".join(seen) or "no python3"))


def safe_home() -> None:
    os.makedirs(HOME, mode=0o755, exist_ok=True)
    st = os.lstat(HOME)
    if os.path.islink(HOME) or (os.geteuid() == 0 and st.st_uid != 0) or st.st_mode & 0o022:
        raise Failure("agent-home", HOME + " is a link, not root's, or writable by others: refusing it")


def baked(cfg: dict[str, str]) -> str | None:
    path = os.path.join(HOME, BAKED)
    if cfg["source"] == "index" or not os.access(path, os.X_OK):
        return None
    out = subprocess.run([path, "--version"], stdout=subprocess.PIPE, text=True).stdout.strip()
    if out != "cfn-chainermn, version " + cfg["version"]:
        return None
    try:
        with open(os.path.join(HOME, BAKED_SHA)) as f:
            same = f.read().strip() == cfg["sha256"]
    except OSError:
        same = False
    return path if same or cfg["source"] == "ami" else None


def make_venv(python: str, dest: str) -> None:
    try:
        run([python, "-I", "-m", "venv", dest], "venv", "python -m venv")
    except Failure:  # Debian/Ubuntu keep ensurepip in pythonX.Y-venv
        shutil.rmtree(dest, ignore_errors=True)
        ver = run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], "venv", "python").strip()
        os.environ["DEBIAN_FRONTEND"] = "noninteractive"  # no needrestart question
        apt = ["apt-get", "-o", "DPkg::Lock::Timeout=600", "-q", "-y"]
        run([*apt, "update"], "venv", "apt-get update")
        run([*apt, "install", f"python{ver}-venv"], "venv", f"apt-get install python{ver}-venv")
        run([python, "-I", "-m", "venv", dest], "venv", "python -m venv")


def template_wheel(cfg: dict[str, str], cfn: Cfn, tmp: str) -> str:
    log("fetching the agent from stack {}'s template".format(cfg["stack"]))
    path = os.path.join(tmp, "cfn_chainermn-{}-py3-none-any.whl".format(cfg["version"]))
    with open(path, "wb") as out:
        out.write(wheel_from(cfn.template(cfg["stack"]), cfg["sha256"]))
    return path


def index_wheel(cfg: dict[str, str], python: str, tmp: str) -> str:
    req = os.path.join(tmp, "agent.txt")
    with open(req, "w") as f:
        f.write(cfg["package"] + "\n")
    index = ["--index-url", cfg["index_url"]] if cfg["index_url"] else []
    run([python, "-I", "-m", "pip", "download", "--disable-pip-version-check", "--no-input", "--no-deps",
         "--require-hashes", "--only-binary", ":all:", "-d", tmp, "-r", req, *index],
        "agent-fetch", "downloading " + cfg["package"])
    found = [n for n in os.listdir(tmp) if n.endswith(".whl")]
    if len(found) != 1:
        raise Failure("agent-fetch", "pip downloaded no single wheel for " + cfg["package"])
    return os.path.join(tmp, found[0])


def install(cfg: dict[str, str], cfn: Cfn) -> str:
    ident = cfg["sha256"] if cfg["source"] != "index" else hashlib.sha256(cfg["package"].encode()).hexdigest()
    dest = os.path.join(HOME, "agent-{}-{}".format(cfg["version"], ident[:12]))
    done = os.path.join(dest, ".complete")
    if os.path.isfile(done):
        with open(done) as f:
            if f.read() == ident:
                return os.path.join(dest, "bin", "cfn-chainermn")
    shutil.rmtree(dest, ignore_errors=True)  # half-built by an earlier boot
    python = choose_python()
    venv_python = os.path.join(dest, "bin", "python")
    pip = [venv_python, "-I", "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--no-cache-dir"]
    index = ["--index-url", cfg["index_url"]] if cfg["index_url"] else []
    with tempfile.TemporaryDirectory() as tmp:
        wheel = template_wheel(cfg, cfn, tmp) if cfg["source"] != "index" else ""
        make_venv(python, dest)
        wheel = wheel or index_wheel(cfg, venv_python, tmp)
        lock = os.path.join(tmp, "lock.txt")
        with zipfile.ZipFile(wheel) as zf, open(lock, "wb") as f:
            f.write(zf.read(LOCK))
        run([*pip, "--require-hashes", "--only-binary", ":all:", "--no-deps", "-r", lock, *index],
            "agent-deps", "installing the agent's hash-pinned dependencies")
        run([*pip, "--no-deps", "--no-index", wheel], "agent-install", "installing the agent")
    with open(done, "w") as f:
        f.write(ident)
    return os.path.join(dest, "bin", "cfn-chainermn")


def boot_argv(cfg: dict[str, str], agent: str) -> list[str]:
    argv = [agent, "node", "boot", "--role", cfg["role"], "--stack", cfg["stack"], "--region", cfg["region"],
            "--bucket", cfg["bucket"], "--signal-resource", cfg["signal"], "--mount-point", cfg["mount_point"]]
    return argv + (["--efs-id", cfg["efs_id"]] if cfg["efs_id"] else [])


def agent_path(cfg: dict[str, str], cfn: Cfn) -> str:
    safe_home()
    found = baked(cfg)
    if found:
        log("using the baked agent " + found)
        return found
    if cfg["source"] == "ami":
        raise Failure("no-baked-agent", "AgentSource is ami but the image has no cfn-chainermn {} at {}".format(
            cfg["version"], os.path.join(HOME, BAKED)))
    return install(cfg, cfn)


def fail(cfg: dict[str, str], imds: Imds, cfn: Cfn, exc: Failure) -> int:
    log("FAILED: " + str(exc))
    try:
        instance_id = imds.get("meta-data/instance-id")
    except Failure as why:  # no id to signal with: the reason stays in the console output
        log("cannot signal CloudFormation: " + str(why))
        return 1
    unique_id = f"{instance_id}-{exc.code}"[:64]
    try:
        cfn.signal(cfg["stack"], cfg["signal"], unique_id, "FAILURE")
        log("signalled FAILURE as " + unique_id)
    except Failure as why:
        log("cannot signal CloudFormation: " + str(why))
    return 1


def main(argv: list[str]) -> int:
    os.chdir("/")  # python -m puts the working folder on sys.path: never one someone else can write
    cfg = CONFIG
    imds = Imds(os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") or "http://169.254.169.254")
    cfn = Cfn(imds, cfg["region"], cfg["url_suffix"])
    try:
        agent = agent_path(cfg, cfn)
        if "--install-only" in argv:  # bake an image from a template: install, do not boot
            print(agent)
            return 0
        log("starting " + agent)
        os.execv(agent, boot_argv(cfg, agent))
    except Failure as exc:
        return fail(cfg, imds, cfn, exc)
    except Exception as exc:  # a bug or a surprise: the stack must still hear of it now
        return fail(cfg, imds, cfn, Failure("internal", f"{type(exc).__name__}: {exc}"))
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
