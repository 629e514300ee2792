#!/usr/bin/env bash
# Step 5: the node agent, cfn-chainermn 0.1.0, in its own venv on CPython 3.11
# (the agent needs Python >= 3.10; the Chainer stack keeps its own interpreter).
# AGENT_WHEEL and AGENT_WHEEL_SHA256 come from packer (the wheel is uploaded by a file provisioner).
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

PREFIX=/opt/cfn-chainermn
export UV_PYTHON_INSTALL_DIR="$PREFIX/python"

main() {
  local wheel=${AGENT_WHEEL:?AGENT_WHEEL (path of the uploaded cfn-chainermn wheel) is not set}
  local want=${AGENT_WHEEL_SHA256:?AGENT_WHEEL_SHA256 is not set}
  local dir got
  verify_sha256 "$wheel" "$want"
  apt_get install --no-install-recommends python3-venv
  dir=$(mktemp -d)
  cat >"$dir/pip.txt" <<'REQ'
pip==20.3.4 --hash=sha256:217ae5161a0e08c0fb873858806e3478c9775caffce5168b50ec885e358c199d --hash=sha256:6773934e5f5fc3eaa8c5a44949b5b924fc122daa0a8aa9f80c835b4ca2a543fc
REQ
  cat >"$dir/uv.txt" <<'REQ'
uv==0.5.31 --hash=sha256:d07e9db12a55005a28bb49ecfa444a0221702158fc021f79e26d8e174f1ebdf9
REQ
  [[ -x "$PREFIX/bootstrap/bin/python" ]] || python3 -m venv "$PREFIX/bootstrap"
  # the distribution's pip may predate uv's manylinux2014 wheel tags
  "$PREFIX/bootstrap/bin/python" -m pip install --disable-pip-version-check --no-cache-dir \
    --require-hashes --no-deps -r "$dir/pip.txt"
  "$PREFIX/bootstrap/bin/python" -m pip install --disable-pip-version-check --no-cache-dir \
    --require-hashes --no-deps -r "$dir/uv.txt"
  "$PREFIX/bootstrap/bin/uv" python install 3.11
  "$PREFIX/bootstrap/bin/uv" venv --python-preference only-managed --python 3.11 "$PREFIX/venv"
  "$PREFIX/bootstrap/bin/uv" pip install --python "$PREFIX/venv/bin/python" "$wheel"
  ln -sf "$PREFIX/venv/bin/cfn-chainermn" /usr/local/bin/cfn-chainermn
  got=$(/usr/local/bin/cfn-chainermn --version)
  [[ $got == *" 0.1.0" ]] || die "installed agent reports '$got', expected 0.1.0"
  log "node agent: $got"
  rm -rf "$dir"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
