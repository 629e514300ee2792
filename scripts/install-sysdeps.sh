#!/usr/bin/env bash
# Debian packages the tests and the demo need. Installs only what is missing, and only as root;
# as another user it names what to install and carries on (the tests that need them skip).
set -euo pipefail
# python3-venv/-dev: the venvs and the mpi4py build; psmisc: fuser for the AMI lock-wait test;
# iptables (and iproute2): the node agent's IMDS guard, proven in a network namespace.
pkgs=(python3-venv python3-dev openssh-server openssh-client openmpi-bin libopenmpi-dev packer shellcheck iproute2
      procps psmisc iptables)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
((${#missing[@]})) || exit 0
if [[ $(id -u) -ne 0 ]]; then
  echo "note: missing Debian packages (install them as root): ${missing[*]}" >&2
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "note: no apt-get here; install: ${missing[*]}" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
echo "installed: ${missing[*]}"
