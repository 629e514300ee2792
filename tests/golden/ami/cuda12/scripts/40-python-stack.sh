#!/usr/bin/env bash
# Step 4: the Python stack in the venv /opt/chainer.
# Every package is pinned and hash-checked (pip --require-hashes); dependencies are listed
# explicitly, so nothing unpinned is pulled in.
set -euo pipefail
umask 022
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8

log() { printf '[%s %s] %s\n' "$(date -u +%H:%M:%S)" "${0##*/}" "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }

# verify_sha256 FILE SHA256: the build stops on any mismatch; the file is removed.
verify_sha256() {
  local file=$1 want=$2 got
  [[ $want =~ ^[0-9a-f]{64}$ ]] || die "not a sha256 for $file: '$want'"
  got=$(sha256sum "$file" | cut -d' ' -f1)
  if [[ $got != "$want" ]]; then
    rm -f "$file"
    die "sha256 mismatch for $file: expected $want, got $got"
  fi
}

# download_verified URL SHA256 DEST: fetch to DEST.part, check it, then move it into place,
# so a partial or tampered download never sits at DEST.
download_verified() {
  local url=$1 want=$2 dest=$3
  [[ $want =~ ^[0-9a-f]{64}$ ]] || die "not a sha256 for $url: '$want'"
  log "download $url"
  curl -fsSL --retry 5 --retry-delay 5 --proto '=https,file' -o "$dest.part" "$url" \
    || die "download failed: $url"
  verify_sha256 "$dest.part" "$want"
  mv "$dest.part" "$dest"
}

# lock_held LOCKFILE...: a process holds one of them (fuser from psmisc; else look for apt/dpkg).
lock_held() {
  if command -v fuser >/dev/null 2>&1; then
    fuser "$@" >/dev/null 2>&1
  else
    pgrep -x 'apt|apt-get|dpkg|unattended-upgr' >/dev/null 2>&1
  fi
}

# wait_for_dpkg_lock [SECONDS [LOCKFILE...]]: unattended-upgrades and apt-daily hold these locks
# right after boot; wait for them to be released (never kill dpkg: that corrupts its database).
wait_for_dpkg_lock() {
  local limit=${1:-900} waited=0
  local locks=("${@:2}")
  ((${#locks[@]})) || locks=(/var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock /var/cache/apt/archives/lock)
  while lock_held "${locks[@]}"; do
    ((waited < limit)) || die "the dpkg/apt lock is still held after ${limit}s: $(pgrep -a 'apt|dpkg|unattended' | tr '\n' ' ')"
    ((waited % 60)) || log "waiting for the dpkg/apt lock (${waited}s)"
    sleep 5
    waited=$((waited + 5))
  done
}

apt_get() {
  wait_for_dpkg_lock 900
  apt-get -o DPkg::Lock::Timeout=600 -y -q "$@"
}

export MPICC=/opt/amazon/openmpi/bin/mpicc
PIP_OPTS=(--disable-pip-version-check --no-cache-dir)

write_requirements() {
  local dir=$1
  cat >"$dir/pip.txt" <<'REQ'
pip==24.3.1 --hash=sha256:3790624780082365f47549d032f3770eeb2b1e8bd1f7b2e02dace1afa361b4ed --hash=sha256:ebcb60557f2aefabc2e0f918751cd24ea0d56d8ec5445fe1807f1d2109660b99
REQ
  cat >"$dir/build.txt" <<'REQ'
setuptools==73.0.1 --hash=sha256:b208925fcb9f7af924ed2dc04708ea89791e24bde0d3020b27df0e116088b34e --hash=sha256:d59a3e788ab7e012ab2c4baed1b376da6366883ee20d7a5fc426816e3d7b1193
wheel==0.45.1 --hash=sha256:708e7481cc80179af0e556bbf0cc00b8444c7321e2700b8d8580231d13017248 --hash=sha256:661e1abd9198507b1409a20c02106d9670b2576e916d58f520316666abca6729
Cython==3.0.11 --hash=sha256:d89a82937ce4037f092e9848a7bbcc65bc8e9fc9aef2bb74f5c15e7d21a73080 --hash=sha256:3999fb52d3328a6a5e8c63122b0a8bd110dfcdb98dda585a3def1426b991cba7 --hash=sha256:0e25f6425ad4a700d7f77cd468da9161e63658837d1bc34861a9861a4ef6346d --hash=sha256:7146dd2af8682b4ca61331851e6aebce9fe5158e75300343f80c07ca80b1faff
numpy==1.26.4 --hash=sha256:ffa75af20b44f8dba823498024771d5ac50620e6915abac414251bd971b4529f --hash=sha256:666dbfb6ec68962c033a450943ded891bed2d54e6755e35e5835d63f4f6931d5 --hash=sha256:2a02aba9ed12e4ac4eb3ea9421c420301a0c6460d9830d74a9df87efa4912010
REQ
  cat >"$dir/main.txt" <<'REQ'
six==1.17.0 --hash=sha256:4721f391ed90541fddacab5acf947aa0d3dc7d27b2e1e8eda2be8970586c3274 --hash=sha256:ff70335d468e7eb6ec65b95b99d3a2836546063f63acc5171de367e834932a81
filelock==3.16.1 --hash=sha256:2082e5703d51fbf98ea75855d9d5527e33d8ff23099bec374a134febee6946b0 --hash=sha256:c249fbfcd5db47e5e2d6d62198e565475ee65e4831e2561c8e313fa7eb961435
protobuf==4.25.8 --hash=sha256:83e6e54e93d2b696a92cad6e6efc924f3850f82b52e1563778dfab8b355101b0 --hash=sha256:15a0af558aa3b13efef102ae6e4f3efac06f1eea11afb3a57db2901447d9fb59 --hash=sha256:6135cf8affe1fc6f76cced2641e4ea8d3e59518d1f24ae41ba97bcad82d397cd
typing_extensions==4.13.2 --hash=sha256:a439e7c04b49fec3e5d3e2beaa21755cadbbdc391694e28ccdd36ca4a1408f8c --hash=sha256:e6c81219bd689f51865d9e372991c540bda33a0379d5573cddb9a3a23f7caaef
chainer==7.8.1 --hash=sha256:179f06176f8d7a42385bc7811956db04e68213cfe30f5081491b9e2b6ff70de8
mpi4py==3.1.6 --hash=sha256:c8fa625e0f92b082ef955bfb52f19fa6691d29273d7d71135d295aa143dee6cb
fastrlock==0.8.3 --hash=sha256:767ec79b7f6ed9b9a00eb9ff62f2a51f56fdb221c5092ab2dadec34a9ccbfc6e --hash=sha256:0d6a77b3f396f7d41094ef09606f65ae57feeb713f4285e8e417f4021617ca62 --hash=sha256:77ab8a98417a1f467dafcd2226718f7ca0cf18d4b64732f838b8c2b3e4b55cb5 --hash=sha256:04bb5eef8f460d13b8c0084ea5a9d3aab2c0573991c880c0a34a56bb14951d30 --hash=sha256:4af6734d92eaa3ab4373e6c9a1dd0d5ad1304e172b1521733c6c3b3d73c8fa5d
cupy-cuda12x==13.6.0 --hash=sha256:e78409ea72f5ac7d6b6f3d33d99426a94005254fa57e10617f430f9fd7c3a0a1 --hash=sha256:77ba6745a130d880c962e687e4e146ebbb9014f290b0a80dbc4e4634eb5c3b48
Pillow==10.4.0 --hash=sha256:e4d49b85c4348ea0b31ea63bc75a9f3857869174e2bf17e7aba02945cd218e6f --hash=sha256:a985e028fc183bf12a77a8bbf36318db4238a3ded7fa9df1b9a133f1cb79f8fc --hash=sha256:5e84b6cc6a4a3d76c153a6b19270b3526a5a8ed6b09501d3af891daa2a9de7d6 --hash=sha256:76a911dfe51a36041f2e756b00f96ed84677cdeb75d25c767f296c1c1eda1319 --hash=sha256:166c1cd4d24309b30d61f79f4a9114b7b2313d7450912277855ff5dfd7cd4a06
cached-property==2.0.1 --hash=sha256:f617d70ab1100b7bcf6e42228f9ddcb78c676ffa167278d9f730d1c2fba69ccb --hash=sha256:484d617105e3ee0e4f1f58725e72a8ef9e93deee462222dbd51cd91230897641
scipy==1.10.1 --hash=sha256:4c0ff64b06b10e35215abce517252b375e580a6125fd5fdf6421b98efbefb2d2 --hash=sha256:15a35c4242ec5f292c3dd364a7c71a61be87a3d4ddcc693372813c0b73c9af1d --hash=sha256:2cf9dfb80a7b4589ba4c40ce7588986d6d5cebc5457cad2c2880f6bc2d42f3a5
cloudpickle==3.1.1 --hash=sha256:c8c5a44295039331ee9dad40ba100a9c7297b6f988e50e87ccdf3765a668350e --hash=sha256:b216fa8ae4019d5482a8ac3c95d8f6346115d8835911fd4aefd1a445e4242c64
gym_notices==0.0.8 --hash=sha256:ad25e200487cafa369728625fe064e88ada1346618526102659b4640f2b4b911 --hash=sha256:e5f82e00823a166747b4c2a07de63b6560b1acb880638547e0cabf825a01e463
pygame==2.6.1 --hash=sha256:da3ad64d685f84a34ebe5daacb39fff14f1251acb34c098d760d63fee768f50c --hash=sha256:ce8cc108b92de9b149b344ad2e25eedbe773af0dc41dfb24d1f07f679b558c60 --hash=sha256:56fb02ead529cee00d415c3e007f75e0780c655909aaa8e8bf616ee09c9feb1f
gym==0.22.0 --hash=sha256:339144c89951758187c378111919bc0e2f1695f9e9d9699e3f19279a6398148d
chainerrl==0.8.0 --hash=sha256:ee153b891360f35f88ab19017b4b5cad66f2df1cbf77dfb3cd66e4fd63a677b0
REQ
  cat >"$dir/chainercv.txt" <<'REQ'
chainercv==0.13.1 --hash=sha256:84214bd2fc191dacd73a95342ac45ded36232fc588825458752ec57df5e97ded
REQ
}

# chainercv 0.13.1: its sdist has only Cython-0.28 C for _nms_gpu_post, which
# fails on Python >= 3.11 (longintrepr.h); rebuild that module from .pyx source with Cython.
install_chainercv() {
  local py=$1 dir=$2 src
  "$py" -m pip download "${PIP_OPTS[@]}" --no-deps --no-build-isolation --no-binary :all: \
    --require-hashes -r "$dir/chainercv.txt" -d "$dir/sdist"
  tar -xzf "$dir/sdist/chainercv-0.13.1.tar.gz" -C "$dir"
  src="$dir/chainercv-0.13.1"
  rm -f "$src/chainercv/utils/bbox/_nms_gpu_post.c"
  cat >"$src/chainercv/utils/bbox/_nms_gpu_post.pyx" <<'PYX'
# Host-side half of ChainerCV's GPU non-maximum suppression, rewritten for cfn-chainermn's
# AMI recipe: the chainercv 0.13.1 sdist ships only C generated by Cython 0.28, which no longer
# compiles on Python >= 3.11, and not this source. Plain Python semantics, compiled by Cython.
import numpy as np


def _nms_gpu_post(mask, n_bbox, threads_per_block, col_blocks):
    """Greedy pass over the GPU's suppression bitmask.

    mask holds, for box i, col_blocks 64-bit words at i * col_blocks; bit b of word w says that
    box i overlaps box w * threads_per_block + b. Keeps boxes in score order, dropping any box
    already overlapped by a kept one. Returns (indices, count).
    """
    keep = np.zeros((n_bbox,), dtype=np.int32)
    suppressed = np.zeros((col_blocks,), dtype=np.uint64)
    kept = 0
    for box in range(n_bbox):
        word, bit = divmod(box, threads_per_block)
        if (int(suppressed[word]) >> bit) & 1:
            continue
        keep[kept] = box
        kept += 1
        row = box * col_blocks
        suppressed[word:] |= mask[row + word:row + col_blocks]
    return keep, kept
PYX
  "$py" -m pip install "${PIP_OPTS[@]}" --no-deps --no-build-isolation "$src"
}

smoke() {
  local py=$1
  "$py" - <<'PY'
from __future__ import print_function
import warnings
warnings.simplefilter("ignore")
import importlib
import pkg_resources
pinned = {
    "pip": "24.3.1",
    "setuptools": "73.0.1",
    "wheel": "0.45.1",
    "Cython": "3.0.11",
    "numpy": "1.26.4",
    "six": "1.17.0",
    "filelock": "3.16.1",
    "protobuf": "4.25.8",
    "typing_extensions": "4.13.2",
    "chainer": "7.8.1",
    "mpi4py": "3.1.6",
    "fastrlock": "0.8.3",
    "cupy-cuda12x": "13.6.0",
    "Pillow": "10.4.0",
    "chainercv": "0.13.1",
    "cached-property": "2.0.1",
    "scipy": "1.10.1",
    "cloudpickle": "3.1.1",
    "gym_notices": "0.0.8",
    "pygame": "2.6.1",
    "gym": "0.22.0",
    "chainerrl": "0.8.0",
}
for dist, version in sorted(pinned.items()):
    got = pkg_resources.get_distribution(dist).version
    assert got == version, "%s is %s, expected %s" % (dist, got, version)
for module in ["chainer", "chainermn", "chainercv", "chainercv.links", "chainerrl", "chainerrl.agents", "cupy"]:
    importlib.import_module(module)
    print("ok import", module)
print("ok %d pinned distributions" % len(pinned))
import chainermn
assert getattr(chainermn.create_communicator, "__cfnmn_compat__", False), "the communicator shim is not loaded"
print("ok communicator shim")
PY
}

# Chainer 7 removed the communicators the 2018 scripts ask for ('hierarchical', ...): a shim and
# the .pth line that loads it, from cfn_chainermn/jobs/chainermn_compat.py (docs/jobs.md).
install_compat() {
  local py=$1 site
  site=$("$py" -I -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  cat >"$site/cfnmn_chainermn_compat.py" <<'COMPAT'
"""ChainerMN's removed communicator names, mapped to ones Chainer 7 still has.

ChainerMN 1.3's examples (the 2018 scripts this project replays) and ChainerMN's upstream
examples/chainermn/mnist/train_mnist.py default to `hierarchical`; Chainer 7 removed
`hierarchical`, `two_dimensional` and `single_node`, and its create_communicator raises
`ValueError: Unrecognized communicator` for them (chainermn/communicators/__init__.py in
chainer v7.8.1: naive, flat, non_cuda_aware, pure_nccl and dummy are left). Those three were
GPU (NCCL) communicators, so on a GPU the name becomes `pure_nccl`, the one Chainer 7 recommends;
without a usable GPU (no CuPy, or no CUDA device) it becomes `naive`, the only communicator that
runs on CPU (the upstream example itself uses `naive` without --gpu). Each substitution writes ONE
line to stderr naming it; every other name and argument is passed on untouched.

This file is installed, as the top-level module `cfnmn_chainermn_compat`, into the site-packages
of the environment that holds Chainer, next to a .pth line that imports it at start-up
(cfn_chainermn/jobs/compat_install.py). install() only puts a finder on sys.meta_path; it does
nothing until `chainermn.communicators` is imported, then wraps its create_communicator before
chainermn/__init__ re-exports it. Standard library only (Python >= 3.8), and no cfn_chainermn
imports: the Chainer environment on a node does not have the package.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # not typing's: importing typing would cost every start-up ~10 ms
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

TARGET = "chainermn.communicators"
REMOVED = ("hierarchical", "two_dimensional", "single_node")
GPU_NAME, CPU_NAME = "pure_nccl", "naive"
MARK = "__cfnmn_compat__"  # set on the wrapper, so a second install never wraps twice


def gpu_usable() -> bool:
    """CuPy imports and sees at least one CUDA device (the check chainer's own cuda.available skips)."""
    try:
        import cupy  # type: ignore[import-not-found, import-untyped, unused-ignore]

        return int(cupy.cuda.runtime.getDeviceCount()) > 0
    except Exception:  # no CuPy, no driver, no device: all mean "run on CPU"
        return False


def still_there(name: str) -> bool:
    """An older ChainerMN (1.x, Chainer < 7) still has the communicator: leave it alone."""
    import importlib.util

    try:
        return importlib.util.find_spec(f"{TARGET}.{name}_communicator") is not None
    except (ImportError, ValueError):
        return False


def substitute(name: object, has_gpu: Callable[[], bool] = gpu_usable,
               exists: Callable[[str], bool] = still_there) -> str | None:
    """The communicator to use instead of a removed `name`, or None to pass `name` on."""
    if not isinstance(name, str) or name not in REMOVED or exists(name):
        return None
    return GPU_NAME if has_gpu() else CPU_NAME


def warning(name: str, new: str) -> str:
    """The one line a substitution writes (on CPU it also says why it is not pure_nccl)."""
    why = "" if new == GPU_NAME else " (no usable GPU: CuPy missing or no CUDA device)"
    return f"cfn-chainermn: ChainerMN communicator '{name}' was removed in Chainer 7; using '{new}' instead{why}\n"


def wrap(create: Callable[..., Any], has_gpu: Callable[[], bool] = gpu_usable,
         exists: Callable[[str], bool] = still_there, stderr: Any = None) -> Callable[..., Any]:
    """create_communicator, with the removed names substituted and said once per call."""
    if getattr(create, MARK, False):
        return create
    import functools

    @functools.wraps(create)
    def create_communicator(*args: Any, **kwargs: Any) -> Any:
        if args:
            name: object = args[0]
        else:
            name = kwargs.get("communicator_name")
        new = substitute(name, has_gpu, exists)
        if new is not None:
            if args:
                args = (new, *args[1:])
            else:
                kwargs["communicator_name"] = new
            out = stderr or sys.stderr
            out.write(warning(str(name), new))
            out.flush()
        return create(*args, **kwargs)

    setattr(create_communicator, MARK, True)
    return create_communicator


def patch(module: Any) -> None:
    module.create_communicator = wrap(module.create_communicator)


class _Loader:
    """The real loader of chainermn.communicators, patching the module once it has run."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, attr: str) -> Any:  # get_resource_reader, is_package, ...
        return getattr(self._inner, attr)

    def create_module(self, spec: Any) -> Any:
        return self._inner.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._inner.exec_module(module)
        patch(module)


class Finder:
    """A sys.meta_path entry that answers only for chainermn.communicators, by asking the others."""

    busy = False  # a finder behind it that calls importlib.util.find_spec must not bring it back here

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != TARGET or self.busy:
            return None
        self.busy = True
        try:
            for finder in sys.meta_path:
                find = getattr(finder, "find_spec", None)
                if finder is self or find is None:
                    continue
                spec = find(fullname, path, target)
                if spec is not None:
                    if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                        spec.loader = _Loader(spec.loader)
                    return spec
            return None
        finally:
            self.busy = False


def install() -> None:
    """What the .pth line calls at start-up: wait for chainermn's import (or patch it, if it came first)."""
    if TARGET in sys.modules:
        for name in (TARGET, "chainermn"):  # chainermn/__init__ re-exported the original
            if hasattr(sys.modules.get(name), "create_communicator"):
                patch(sys.modules[name])
    elif not any(isinstance(f, Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, Finder())
COMPAT
  cat >"$site/cfnmn-chainermn-compat.pth" <<'COMPAT'
import cfnmn_chainermn_compat; cfnmn_chainermn_compat.install()
COMPAT
  "$py" -I -m py_compile "$site/cfnmn_chainermn_compat.py"
}

main() {
  apt_get install --no-install-recommends python3-venv python3-dev build-essential
  local interp py dir
  local interpreters=(/usr/bin/python3)
  for interp in "${interpreters[@]}"; do
    [[ -x /opt/chainer/bin/python ]] || "$interp" -m venv /opt/chainer
    py=/opt/chainer/bin/python
    dir=$(mktemp -d)
    write_requirements "$dir"
    log "installing the pinned stack with $py"
    # a known pip first: the distribution's may predate --no-build-isolation or manylinux2014
    "$py" -m pip install "${PIP_OPTS[@]}" --require-hashes --no-deps -r "$dir/pip.txt"
    "$py" -m pip install "${PIP_OPTS[@]}" --require-hashes --no-deps -r "$dir/build.txt"
    "$py" -m pip install "${PIP_OPTS[@]}" --require-hashes --no-deps --no-build-isolation -r "$dir/main.txt"
    install_chainercv "$py" "$dir"
    "$py" -m pip check || die "pip check found broken requirements in $py's environment"
    install_compat "$py"
    smoke "$py"
    # the node agent finds this and skips its first-boot install of the same lock
    cat >/opt/chainer/cfn-chainermn-stack.json <<'JSON'
{"by": "ami build cuda12", "lock": "chainer-stack-cuda12", "sha256": "7d087bce523b75c6e48c63785ef4b8158a77ae5103c3cdf9e2f86e51539b1dd1"}
JSON
    rm -rf "$dir"
  done
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
