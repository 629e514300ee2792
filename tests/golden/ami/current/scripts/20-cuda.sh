#!/usr/bin/env bash
# Step 2: CUDA 11.0 at /usr/local/cuda-11.0 (nvidia-apt).
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

CUDA_PATH=/usr/local/cuda-11.0
CUDA_VERSION=11.0

check_cuda() {
  [[ -x "$CUDA_PATH/bin/nvcc" ]] || die "no nvcc under $CUDA_PATH; this profile needs CUDA $CUDA_VERSION there"
  "$CUDA_PATH/bin/nvcc" --version | grep -q "release $CUDA_VERSION," \
    || die "$CUDA_PATH/bin/nvcc is not CUDA $CUDA_VERSION: $("$CUDA_PATH/bin/nvcc" --version | tail -n 1)"
  log "CUDA $CUDA_VERSION found at $CUDA_PATH"
}

# check_repo_key FILE FINGERPRINT: FILE holds that one primary key and no other. Every key in
# it lands in the keyring apt trusts, so a file with the pinned key plus another is refused.
check_repo_key() {
  local file=$1 want=$2 listing got
  listing=$(gpg --batch --show-keys --with-colons "$file") || die "$file is not an OpenPGP key file"
  # the fingerprint of each primary key (the fpr record right after its pub record), not subkeys'
  got=$(awk -F: '$1 == "pub" || $1 == "sec" {want_fpr = 1; next} $1 == "fpr" && want_fpr {print $10} {want_fpr = 0}' \
    <<<"$listing" | sort | tr '\n' ' ')
  [[ $got == "$want " ]] \
    || die "NVIDIA repository key file holds the key(s) '${got% }', expected exactly $want"
}

add_nvidia_repo() {
  local key
  key=$(mktemp)
  apt_get install --no-install-recommends gnupg
  curl -fsSL --retry 5 --proto '=https' -o "$key" https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2004/x86_64/3bf863cc.pub \
    || die "cannot fetch NVIDIA's repository key"
  check_repo_key "$key" EB693B3035CD5710E231E123A4B469963BF863CC
  gpg --dearmor <"$key" >"$key.gpg" || die "cannot dearmor NVIDIA's repository key"
  check_repo_key "$key.gpg" EB693B3035CD5710E231E123A4B469963BF863CC  # and what apt will trust
  install -m 0644 "$key.gpg" /usr/share/keyrings/cuda-archive-keyring.gpg
  rm -f "$key" "$key.gpg"
  echo "deb [signed-by=/usr/share/keyrings/cuda-archive-keyring.gpg] https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2004/x86_64 /" \
    >/etc/apt/sources.list.d/cuda.list
  apt_get update
}

main() {
  add_nvidia_repo
  apt_get install --no-install-recommends cuda-toolkit-11-0 libnccl2=2.7.8-1+cuda11.0 libnccl-dev=2.7.8-1+cuda11.0
  apt_get install --no-install-recommends nvidia-driver-535-server
  check_cuda
  echo "$CUDA_PATH/lib64" >/etc/ld.so.conf.d/cfn-chainermn-cuda.conf
  ldconfig
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
