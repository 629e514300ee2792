#!/usr/bin/env bash
# Step 3: OpenMPI 4.1.6 built against CUDA 11.0, checked to be CUDA-aware.
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

OMPI_URL=https://download.open-mpi.org/release/open-mpi/v4.1/openmpi-4.1.6.tar.bz2
OMPI_SHA256=f740994485516deb63b5311af122c265179f5328a0d857a567b85db00b11e415
OMPI_PREFIX=/usr/local/mpi

purge_preinstalled() {
  local pkg installed=()
  local candidates=(openmpi-bin openmpi-common libopenmpi-dev libopenmpi3)
  for pkg in "${candidates[@]}"; do
    if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      installed+=("$pkg")
    fi
  done
  if ((${#installed[@]})); then
    log "removing the distribution's OpenMPI: ${installed[*]}"
    apt_get purge "${installed[@]}"
  fi
}

build() {
  local work=$1
  tar -xjf "$work/openmpi.tar.bz2" -C "$work"
  cd "$work/openmpi-4.1.6"
  ./configure --prefix=/usr/local/mpi --with-cuda=/usr/local/cuda-11.0 >"$work/configure.log" 2>&1 \
    || { tail -n 40 "$work/configure.log" >&2; die "OpenMPI configure failed"; }
  make -j"$(nproc)" >"$work/make.log" 2>&1 || { tail -n 40 "$work/make.log" >&2; die "OpenMPI build failed"; }
  make install >"$work/install.log" 2>&1 || { tail -n 40 "$work/install.log" >&2; die "OpenMPI install failed"; }
}

check_cuda_aware() {
  "$OMPI_PREFIX/bin/ompi_info" --parsable --all | grep -q 'mpi_built_with_cuda_support:value:true' \
    || die "OpenMPI at $OMPI_PREFIX was built without CUDA support"
  log "OpenMPI $("$OMPI_PREFIX/bin/ompi_info" --parsable --version 2>/dev/null | head -n 1) is CUDA-aware"
}

write_mca_defaults() {
  # Cluster-wide defaults; the node agent adds the cluster's interfaces and hostfile per user.
  cat >"$OMPI_PREFIX/etc/openmpi-mca-params.conf" <<'MCA'
# written by cfn-chainermn's AMI recipe (current)
plm_rsh_no_tree_spawn = 1
rtc = ^hwloc
btl_base_warn_component_unused = 0
orte_keep_fqdn_hostnames = t
btl_tcp_sndbuf = 0
btl_tcp_rcvbuf = 0
MCA
}

main() {
  local work
  work=$(mktemp -d)
  download_verified "$OMPI_URL" "$OMPI_SHA256" "$work/openmpi.tar.bz2"
  purge_preinstalled
  apt_get install --no-install-recommends build-essential bzip2 libnuma-dev
  build "$work"
  check_cuda_aware
  write_mca_defaults
  echo "$OMPI_PREFIX/lib" >/etc/ld.so.conf.d/cfn-chainermn-openmpi.conf
  ldconfig
  rm -rf "$work"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
