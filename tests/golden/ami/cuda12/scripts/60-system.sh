#!/usr/bin/env bash
# Step 6: sshd settings for mpiexec fan-out, and the environment every login sees.
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

SSHD_SETTINGS='# cfn-chainermn: mpiexec opens many ssh sessions at once
MaxStartups 200:30:400
MaxSessions 64
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
X11Forwarding no
ClientAliveInterval 15
ClientAliveCountMax 4
'

configure_sshd() {
  if grep -qE '^[[:space:]]*Include[[:space:]]+/etc/ssh/sshd_config.d/' /etc/ssh/sshd_config; then
    printf '%s\n' "$SSHD_SETTINGS" >/etc/ssh/sshd_config.d/10-cfn-chainermn.conf
  else
    # OpenSSH < 8.2 has no sshd_config.d: put the block first (the first value of a keyword wins).
    sed -i '/^# BEGIN cfn-chainermn$/,/^# END cfn-chainermn$/d' /etc/ssh/sshd_config
    { echo '# BEGIN cfn-chainermn'; printf '%s\n' "$SSHD_SETTINGS"; echo '# END cfn-chainermn'; cat /etc/ssh/sshd_config; } \
      >/etc/ssh/sshd_config.new
    mv /etc/ssh/sshd_config.new /etc/ssh/sshd_config
  fi
  sshd -t || die "sshd rejects the new configuration"
  systemctl reload ssh
}

write_profile() {
  cat >/etc/profile.d/cfn-chainermn.sh <<'ENV'
# cfn-chainermn AMI (cuda12): CUDA, CUDA-aware OpenMPI and the Chainer stack first on PATH
export PATH=/opt/chainer/bin:/opt/amazon/openmpi/bin:/opt/chainer/cuda/bin:$PATH
export LD_LIBRARY_PATH=/opt/amazon/openmpi/lib:/opt/chainer/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export CUDA_PATH=/opt/chainer/cuda
export CHAINER_WARN_VERSION_MISMATCH=0
ENV
}

main() {
  configure_sshd
  write_profile
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
