#!/usr/bin/env bash
# Step 2: CUDA 12.x at /opt/chainer/cuda (base-ami).
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

CUDA_PATH=/opt/chainer/cuda
CUDA_VERSION=12

check_cuda() {
  [[ -x "$CUDA_PATH/bin/nvcc" ]] || die "no nvcc under $CUDA_PATH; this profile needs CUDA $CUDA_VERSION there"
  "$CUDA_PATH/bin/nvcc" --version | grep -q "release $CUDA_VERSION\." \
    || die "$CUDA_PATH/bin/nvcc is not CUDA $CUDA_VERSION: $("$CUDA_PATH/bin/nvcc" --version | tail -n 1)"
  log "CUDA $CUDA_VERSION found at $CUDA_PATH"
}

# CUDA_PATH links the newest /usr/local/cuda-12.* of the image; its NCCL goes on the loader path.
# The same functions (cfn_chainermn/data/gpu-stack.sh) run on the nodes when the node agent
# installs this stack at first boot.
gpu_stack_log() { printf '[%s gpu-stack] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# gpu_stack_pick SELECT: the newest matching dir that has bin/nvcc, or nothing.
gpu_stack_pick() {
  local dir best=""
  while IFS= read -r dir; do
    if [[ -x "$dir/bin/nvcc" && ! -L "$dir" ]]; then
      best=$dir
    fi
  done < <(compgen -G "$1" | sort -V)
  printf '%s' "$best"
}

# gpu_stack_nccl_dir CUDA_DIR: where the image keeps libnccl.so.2 (next to that toolkit first).
gpu_stack_nccl_dir() {
  local dir
  for dir in "$1/lib" "$1/lib64" "$1/targets/x86_64-linux/lib" /usr/lib/x86_64-linux-gnu; do
    if [[ -e "$dir/libnccl.so.2" ]]; then
      printf '%s' "$dir"
      return 0
    fi
  done
  return 1
}

gpu_stack_main() {
  local select=$1 link=$2 ldconf=$3 cuda nccl
  cuda=$(gpu_stack_pick "$select")
  if [[ -z $cuda ]]; then
    gpu_stack_log "FATAL: no CUDA toolkit matches $select with bin/nvcc; CuPy 13 needs a CUDA 12.x toolkit (use a Deep Learning Base AMI that ships one)"
    return 1
  fi
  mkdir -p "$(dirname "$link")"
  ln -sfn "$cuda" "$link"
  if ! nccl=$(gpu_stack_nccl_dir "$cuda"); then
    gpu_stack_log "FATAL: no libnccl.so.2 next to $cuda or in /usr/lib/x86_64-linux-gnu; the image's NCCL is missing"
    return 1
  fi
  mkdir -p "$(dirname "$ldconf")"
  printf '%s\n%s\n' "# cfn-chainermn: the image's NCCL (aws-ofi-nccl's) for CuPy, and CUDA $cuda" "$nccl" >"$ldconf"
  printf '%s\n' "$link/lib64" >>"$ldconf"
  "${LDCONFIG:-ldconfig}"
  gpu_stack_log "CUDA $cuda (newest of $select) at $link; NCCL from $nccl via $ldconf"
  printf 'cuda=%s nccl=%s\n' "$cuda" "$nccl"
}


main() {
  gpu_stack_main '/usr/local/cuda-12.*' "$CUDA_PATH" /etc/ld.so.conf.d/cfn-chainermn-nccl.conf
  check_cuda
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
