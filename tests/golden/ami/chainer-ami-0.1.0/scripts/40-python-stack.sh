#!/usr/bin/env bash
# Step 4: the Python stack in the system site of /usr/bin/python2 /usr/bin/python3.
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

export MPICC=/usr/local/mpi/bin/mpicc
PIP_OPTS=(--disable-pip-version-check --no-cache-dir)

write_requirements() {
  local dir=$1
  cat >"$dir/pip.txt" <<'REQ'
pip==20.3.4 --hash=sha256:217ae5161a0e08c0fb873858806e3478c9775caffce5168b50ec885e358c199d --hash=sha256:6773934e5f5fc3eaa8c5a44949b5b924fc122daa0a8aa9f80c835b4ca2a543fc
REQ
  cat >"$dir/build.txt" <<'REQ'
setuptools==39.2.0 --hash=sha256:8fca9275c89964f13da985c3656cb00ba029d7f3916b37990927ffdf264e7926 --hash=sha256:f7cddbb5f5c640311eb00eab6e849f7701fa70bf6a183fc8a2c33dd1d1672fb2
wheel==0.31.1 --hash=sha256:80044e51ec5bbf6c894ba0bc48d26a8c20a9ba629f4ca19ea26ecfcf87685f5f --hash=sha256:0a2e54558a0628f2145d2fc822137e322412115173e8a2ddbe1c9024338ae83c
numpy==1.14.5 --hash=sha256:6c57f973218b776195d0356e556ec932698f3a563e2f640cfca7020086383f50 --hash=sha256:5edf1acc827ed139086af95ce4449b7b664f57a8c29eb755411a634be280d9f2 --hash=sha256:baadc5f770917ada556afb7651a68176559f4dca5f4b2d0947cd15b9fb84fb51 --hash=sha256:a4a433b3a264dbc9aa9c7c241e87c0358a503ea6394f8737df1683c7c9a102ac
REQ
  cat >"$dir/main.txt" <<'REQ'
six==1.11.0 --hash=sha256:832dc0e10feb1aa2c68dcc57dbb658f1c7e65b9b61af69048abc87a2db00a0eb --hash=sha256:70e8a77beed4562e7f14fe23a786b54f6296e34344c23bc42f07b15018ff98e9
filelock==3.0.4 --hash=sha256:011327d4ed939693a5b28c0fdf2fd9bda1f68614c1d6d0643a89382ce9843a71
protobuf==3.6.0 --hash=sha256:12985d9f40c104da2f44ec089449214876809b40fdc5d9e43b93b512b9e74056 --hash=sha256:695072063e256d32335d48b9484451f7c7948edc3dbd419469d6a778602682fc --hash=sha256:9f1087abb67b34e55108bc610936b34363a7aac692023bcbb17e065c253a1f80 --hash=sha256:a37836aa47d1b81c2db1a6b7a5e79926062b5d76bd962115a0e615551be2b48d
fastrlock==0.3 --hash=sha256:ad76ff4c4fb10793c14033653de050f67016810ee976dcc744eb577df0e2d358 --hash=sha256:a6fa2b83d20c61f0fba13cc25006efc620fe19ec39c1fec8f024b9898bd5f360 --hash=sha256:b24171e935effd5068b91e5e57e61e198c3ce48b7231df40571408af2486b910 --hash=sha256:adccdc23d51ca87a0e55b2a4ce3b4813fa2c7442ce966713fa699456c24ab902
cupy-cuda90==4.1.0 --hash=sha256:af58291c0e1eca8b25fc52f5bbb9f96e9b76ac55df7f174832c0a43d3d0925fd --hash=sha256:48c087613a1926c308854aeff9d9ac7b43b0290e3b625d5a194560d4815f9e2b
chainer==4.1.0 --hash=sha256:49a4a691708626f742cc6fc949fce6b313e3379bd64886eb19e002b1122cc329
pycparser==2.18 --hash=sha256:99a8ca03e29851d96616ad0404b4aad7d9ee16f25c9f9708a11faf2810f7b226
cffi==1.11.5 --hash=sha256:1553d1e99f035ace1c0544050622b7bc963374a00c467edafac50ad7bd276aef --hash=sha256:edabd457cd23a02965166026fd9bfd196f4324fe6032e866d0f3bd0301cd486f --hash=sha256:2ba8a45822b7aee805ab49abfe7eec16b90587f7f26df20c71dd89e45a97076f --hash=sha256:e90f17980e6ab0f3c2f3730e56d1fe9bcba1891eeea58966e89d352492cc74f4
mpi4py==3.0.0 --hash=sha256:b457b02d85bdd9a4775a097fac5234a20397b43e073f14d9e29b6cd78c68efd7
chainermn==1.3.0 --hash=sha256:18cf1ecd951afe491f9179864783414d8a57ef58f11b8c3910fc941b0f197129
Pillow==5.1.0 --hash=sha256:b48401752496757e95304a46213c3155bc911ac884bed2e9b275ce1c1df3e293 --hash=sha256:b6cf18f9e653a8077522bb3aa753a776b117e3e0cc872c25811cfdf1459491c2 --hash=sha256:ea0091cd4100519cedfeea2c659f52291f535ac6725e2368bcf59e874f270efa --hash=sha256:cee9bc75bff455d317b6947081df0824a8f118de2786dc3d74a3503fd631f4ef
chainercv==0.9.0 --hash=sha256:56da3852387a8c1942b8b07ef56bfcbd397a413273fd9bb7e998d495afb23e03
cached-property==1.4.3 --hash=sha256:f1f9028757dc40b4cb0fd2234bd7b61a302d7b84c683cb8c2c529238a24b8938 --hash=sha256:630fdbf0f4ac7d371aa866016eba1c3ac43e9032246748d4994e67cb05f99bc4
future==0.16.0 --hash=sha256:e39ced1ab767b5936646cedba8bcce582398233d6a627067d4c6a454c90cfedb
scipy==1.1.0 --hash=sha256:d8491d4784aceb1f100ddb8e31239c54e4afab8d607928a9f7ef2469ec35ae01 --hash=sha256:08237eda23fd8e4e54838258b124f1cd141379a5f281b0a234ca99b38918c07a --hash=sha256:108c16640849e5827e7d51023efb3bd79244098c3f21e4897a1007720cb7ce37 --hash=sha256:878352408424dffaa695ffedf2f9f92844e116686923ed9aa8626fc30d32cfd1
certifi==2018.4.16 --hash=sha256:9fa520c1bacfb634fa7af20a76bcbd3d5fb390481724c597da32c719a7dca4b0 --hash=sha256:13e698f54293db9f89122b0581843a782ad0934a4fe0172d2a980ba77fc61bb7
chardet==3.0.4 --hash=sha256:fc323ffcaeaed0e0a02bf4d117757b98aed530d9ed4531e3e15460124c106691 --hash=sha256:84ab92ed1c4d4f16916e05906b6b75a6c0fb5db821cc65e70cbd64a3e2a5eaae
idna==2.7 --hash=sha256:156a6814fb5ac1fc6850fb002e0852d56c0c8d2531923a51032d1b70760e186e --hash=sha256:684a38a6f903c1d71d6d5fac066b58d7768af4de2b832e426ec79c30daa94a16
urllib3==1.23 --hash=sha256:b5725a0bd4ba422ab0e66e89e030c806576753ea3ee08554382c14e685d117b5 --hash=sha256:a68ac5e15e76e7e5dd2b8f94007233e01effe3e50e8daddf69acfd81cb686baf
requests==2.19.1 --hash=sha256:63b52e3c866428a224f97cab011de738c36aec0185aa91cfacd418b5d58911d1 --hash=sha256:ec22d826a36ed72a7358ff3fe56cbd4ba69dd7a6718ffd450ff0e9df7a47ce6a
pyglet==1.3.2 --hash=sha256:8b07aea16f34ac861cffd06a0c17723ca944d172e577b57b21859b7990709a66 --hash=sha256:b00570e7cdf6971af8953b6ece50d83d13272afa5d1f1197c58c0f478dd17743
gym==0.10.5 --hash=sha256:6baf3f3b163e237869d92a64daeaa88f14f62bb1105863e45312505a19dbd652
chainerrl==0.3.0 --hash=sha256:5c698d5978fc827fcc94d904967c9f96504af50ba59e165ff66384010dd54c9d
REQ
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
    "pip": "20.3.4",
    "setuptools": "39.2.0",
    "wheel": "0.31.1",
    "numpy": "1.14.5",
    "six": "1.11.0",
    "filelock": "3.0.4",
    "protobuf": "3.6.0",
    "fastrlock": "0.3",
    "cupy-cuda90": "4.1.0",
    "chainer": "4.1.0",
    "pycparser": "2.18",
    "cffi": "1.11.5",
    "mpi4py": "3.0.0",
    "chainermn": "1.3.0",
    "Pillow": "5.1.0",
    "chainercv": "0.9.0",
    "cached-property": "1.4.3",
    "future": "0.16.0",
    "scipy": "1.1.0",
    "certifi": "2018.4.16",
    "chardet": "3.0.4",
    "idna": "2.7",
    "urllib3": "1.23",
    "requests": "2.19.1",
    "pyglet": "1.3.2",
    "gym": "0.10.5",
    "chainerrl": "0.3.0",
}
for dist, version in sorted(pinned.items()):
    got = pkg_resources.get_distribution(dist).version
    assert got == version, "%s is %s, expected %s" % (dist, got, version)
for module in ["chainer", "chainermn", "chainercv", "chainercv.links", "chainerrl", "chainerrl.agents", "cupy"]:
    importlib.import_module(module)
    print("ok import", module)
print("ok %d pinned distributions" % len(pinned))
PY
}

main() {
  apt_get install --no-install-recommends python-pip python3-pip python-dev python3-dev build-essential
  local interp py dir
  local interpreters=(/usr/bin/python2 /usr/bin/python3)
  for interp in "${interpreters[@]}"; do
    py=$interp
    dir=$(mktemp -d)
    write_requirements "$dir"
    log "installing the pinned stack with $py"
    # a known pip first: the distribution's may predate --no-build-isolation or manylinux2014
    "$py" -m pip install "${PIP_OPTS[@]}" --require-hashes --no-deps -r "$dir/pip.txt"
    "$py" -m pip install "${PIP_OPTS[@]}" --require-hashes --no-deps -r "$dir/build.txt"
    "$py" -m pip install "${PIP_OPTS[@]}" --require-hashes --no-deps --no-build-isolation -r "$dir/main.txt"
    "$py" -m pip check || die "pip check found broken requirements in $py's environment"
    smoke "$py"
    rm -rf "$dir"
  done
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
