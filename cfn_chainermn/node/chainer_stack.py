"""The boot step that gives an image without Chainer the CUDA 12 Chainer stack (issue 11 item 2).

The stack is the lock cfn_chainermn/data/chainer-stack-cuda12.json, the one `ami build cuda12`
bakes; an image that has it (its marker in the prefix holds the lock's digest) or that was
built from another profile (the AMI manifest names it) is left as it is. Otherwise the master
builds a wheelhouse once (stack_build.py), publishes it under chainer-stack/ in the key bucket
(only the master may write there; workers may only read) with a manifest of sha256s written
last, and every node installs from it with --no-index --require-hashes. Where the platform has a
GPU, gpu-stack.sh (shared with the AMI recipe) links CUDA 12 and puts the image's NCCL on the
loader path first. The step fails with a reason (it reaches the stack events) unless the stack
imports; only then do the later steps mark the node ready.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from cfn_chainermn.ami.lock import MARKER_NAME, STACK_LOCK, Package, load_lock, lock_digest, sha256_file
from cfn_chainermn.errors import AgentError, CfnChainermnError
from cfn_chainermn.jobs import compat_install
from cfn_chainermn.names import CHAINER_STACK_MANIFEST, CHAINER_STACK_PREFIX
from cfn_chainermn.node import stack_build
from cfn_chainermn.node.context import Context
from cfn_chainermn.node.stack_build import Host
from cfn_chainermn.node.system import write_atomic

LOCK = STACK_LOCK
POLL_S = 10.0


def lock() -> tuple[dict[str, Any], tuple[Package, ...]]:
    return load_lock(LOCK)


def installed(prefix: Path, digest: str) -> bool:
    """The prefix holds this lock's stack (baked by `ami build cuda12`, or an earlier boot)."""
    try:
        return bool(json.loads((prefix / MARKER_NAME).read_text(encoding="utf-8")).get("sha256") == digest)
    except (OSError, ValueError, AttributeError):
        return False


def step(ctx: Context) -> str:
    """Install the stack unless the image has it; the detail says what ran, what was skipped
    (by name) and how long each part took."""
    data, packages = lock()
    host = ctx.platform.chainer_stack_host(ctx)
    if isinstance(host, str):
        return f"skipped: {host}"
    digest = lock_digest(packages)
    if installed(host.prefix, digest):
        return f"{LOCK} already in {host.prefix} ({MARKER_NAME}): nothing to install"
    wanted = [p for p in packages if host.gpu or not p.gpu]
    notes = []
    if not host.gpu:
        gpu_only = ", ".join(f"{p.name} {p.version}" for p in packages if p.gpu)
        notes.append(f"GPU parts skipped (no GPU): gpu-stack.sh (CUDA 12 link, NCCL loader path), {gpu_only}")
        ctx.log.info(f"stack: {notes[0]}")
    else:
        notes.append(ctx.platform.gpu_stack(str(data["cuda_select"]), str(data["cuda_link"])))
    with tempfile.TemporaryDirectory(prefix="cfn-chainermn-stack-") as tmp:
        work = Path(tmp)
        if ctx.settings.role == "master":
            files = _build_and_publish(ctx, host, wanted, work, digest)
        else:
            files = _fetch(ctx, host, work / "wheels", digest)
        stack_build.install(host, work / "wheels", files)
    _compat_shim(host)
    # the cluster user's logins get the same env (stack_hosts.login_env)
    stack_build.smoke(host, {str(k): str(v) for k, v in (data.get("env") or {}).items()})
    write_atomic(host.prefix / MARKER_NAME, json.dumps({"lock": LOCK, "sha256": digest, "by": "node agent"},
                                                       sort_keys=True) + "\n", 0o644)
    took = ", ".join(f"{what} {s:.1f} s" for what, s in host.timings)
    return "; ".join([f"{LOCK} installed in {host.prefix} ({len(files)} wheels): {took}", *notes])


def _compat_shim(host: Host) -> None:
    """The 2018 scripts' removed communicators (hierarchical, ...) run as pure_nccl/naive: the
    jobs/ shim goes into the stack's environment, as make install puts it into the local venv."""
    start = time.monotonic()
    try:
        compat_install.install_into(host.venv_python)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise AgentError(f"the communicator shim could not be installed into {host.prefix}: {exc}") from exc
    host.timings.append(("communicator shim", time.monotonic() - start))


def _build_and_publish(ctx: Context, host: Host, wanted: list[Package], work: Path, digest: str) -> dict[str, str]:
    """Build once; publish each wheel, then the manifest (workers start on the manifest). A
    failed build is published too, so the workers fail now with the master's reason."""
    try:
        files = stack_build.build_wheelhouse(host, wanted, work)
    except CfnChainermnError as exc:
        _put_manifest(ctx, {"lock": LOCK, "sha256": digest, "error": str(exc)})
        raise
    start = time.monotonic()
    for name in files:
        ctx.bucket.put(f"{CHAINER_STACK_PREFIX}wheels/{name}", (work / "wheels" / name).read_bytes())
    _put_manifest(ctx, {"lock": LOCK, "sha256": digest, "gpu": host.gpu, "files": files})
    host.timings.append(("publish", time.monotonic() - start))
    return files


def _put_manifest(ctx: Context, manifest: dict[str, Any]) -> None:
    ctx.bucket.put(CHAINER_STACK_MANIFEST, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())


def _fetch(ctx: Context, host: Host, wheels: Path, digest: str) -> dict[str, str]:
    """Wait for the master's manifest of this lock, then fetch each wheel and check its sha256."""
    start = time.monotonic()
    deadline = start + ctx.settings.stack_wait
    while True:
        raw = ctx.bucket.get(CHAINER_STACK_MANIFEST)
        manifest = _parse(raw) if raw is not None else {}
        if manifest.get("sha256") == digest:
            break
        if time.monotonic() + POLL_S > deadline:
            raise AgentError(f"the master's Chainer stack ({CHAINER_STACK_MANIFEST}) did not appear within "
                             f"{ctx.settings.stack_wait:g} s; see the master's agent log under logs/")
        time.sleep(POLL_S)
    if manifest.get("error"):
        raise AgentError(f"the master's Chainer stack build failed: {manifest['error']}")
    if not host.gpu and manifest.get("gpu"):
        raise AgentError("the master built the stack for a GPU and this node has none")
    host.timings.append(("wait for the master", time.monotonic() - start))
    start = time.monotonic()
    files = {str(k): str(v) for k, v in dict(manifest.get("files") or {}).items()}
    wheels.mkdir(parents=True, exist_ok=True)
    for name, want in files.items():
        if "/" in name or name.startswith("."):
            raise AgentError(f"the stack manifest names {name!r}; refusing a path")
        body = ctx.bucket.get(f"{CHAINER_STACK_PREFIX}wheels/{name}")
        if body is None:
            raise AgentError(f"{CHAINER_STACK_PREFIX}wheels/{name} is in the manifest but not in the bucket")
        (wheels / name).write_bytes(body)
        if sha256_file(wheels / name) != want:
            raise AgentError(f"{CHAINER_STACK_PREFIX}wheels/{name}: sha256 differs from the master's manifest")
    host.timings.append(("fetch", time.monotonic() - start))
    return files


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
