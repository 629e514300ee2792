#!/usr/bin/env bash
# Step 5: the node agent, cfn-chainermn 0.1.0, in its own venv on CPython 3.11
# (the agent needs Python >= 3.10; the Chainer stack keeps its own interpreter).
# AGENT_WHEEL and AGENT_WHEEL_SHA256 come from packer (the wheel is uploaded by a file provisioner);
# its dependencies are pinned with hashes in ami/files/agent-requirements.txt.
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
pip==24.3.1 --hash=sha256:3790624780082365f47549d032f3770eeb2b1e8bd1f7b2e02dace1afa361b4ed --hash=sha256:ebcb60557f2aefabc2e0f918751cd24ea0d56d8ec5445fe1807f1d2109660b99
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
  cat >"$dir/agent-requirements.txt" <<'REQ'
# The node agent's dependencies, pinned with hashes for CPython 3.11 on x86_64 Linux.
# 50-agent.sh installs these with `uv pip install --require-hashes`, then the agent wheel
# itself with --no-deps (its sha256 comes from `ami build`). Refresh after a dependency change:
#   python3 ami/tools/pypi_hashes.py --py cp311 NAME==VERSION ...
# Each pin's `# via` line names what requires it (pyproject.toml's dependencies: cfn-chainermn);
# tests/ami checks the lock against pyproject.toml and these lines, not the installed versions.
awacs==2.6.1 \
    --hash=sha256:7eab231a8dbc30a1f4eca248b0f0a29de0adf5c89990d36775cf7f7ddc881047 \
    --hash=sha256:6ccf0f320c4766cf1e023a39729cb128bd44d81c8cd50ec3fed0bd409a2f9055
    # via cfn-chainermn
bcrypt==5.0.0 \
    --hash=sha256:560ddb6ec730386e7b3b26b8b4c88197aaed924430e7b74666a586ac997249ef \
    --hash=sha256:0c8e093ea2532601a6f686edbc2c6b2ec24131ff5c52f7610dd64fa4553b5464 \
    --hash=sha256:89042e61b5e808b67daf24a434d89bab164d4de1746b37a8d173b6b14f3db9ff \
    --hash=sha256:7aeef54b60ceddb6f30ee3db090351ecf0d40ec6e2abf41430997407a46d2254 \
    --hash=sha256:f8429e1c410b4073944f03bd778a9e066e7fad723564a52ff91841d278dfc822 \
    --hash=sha256:611f0a17aa4a25a69362dcc299fda5c8a3d4f160e2abb3831041feb77393a14a \
    --hash=sha256:f748f7c2d6fd375cc93d3fba7ef4a9e3a092421b8dbf34d8d4dc06be9492dfdd
    # via paramiko
boto3==1.44.8 \
    --hash=sha256:099caf21553bbbfef118904aa02fadb8776a534704cf00bede0ed9f29a4da88e \
    --hash=sha256:32f646d28ea25820ec210cfa48e2409bf06a4a529c8b243013fd045716e99826
    # via cfn-chainermn
botocore==1.44.8 \
    --hash=sha256:76342a76c338701db80dcb8afe1c9bd079283d6fffbb9d881442abb02a215043 \
    --hash=sha256:945b783c1a1259e2a8b078f3f3dd40fae32ea84ab01d3a9953af6b378da7108a
    # via boto3, s3transfer
cffi==2.1.1 \
    --hash=sha256:34e261f78cb6ceaaa36f42f2613f4380d94d9c759a9c73c769ee6e0247364632 \
    --hash=sha256:dd31f52ea1086513bb9df30f8fcee9b8918323ae067a3d5b78bc826a000712be
    # via cryptography, pynacl
cfn-flip==1.3.0 \
    --hash=sha256:faca8e77f0d32fb84cce1db1ef4c18b14a325d31125dae73c13bcc01947d2722 \
    --hash=sha256:003e02a089c35e1230ffd0e1bcfbbc4b12cc7d2deb2fcc6c4228ac9819307362
    # via troposphere
click==8.5.1 \
    --hash=sha256:8bb5376d2006950386f8c6427613334a2acadc5f559cb80e638d00b4df957e37 \
    --hash=sha256:9bbfada76703fd1d784b83eea012e3e8c6a001a876543ef104fa56aaaeb072b4
    # via cfn-chainermn, cfn-flip
cryptography==50.0.2 \
    --hash=sha256:630ebfea3bf689d075f82316324ff7433dc447fe6bc1bfc76524b74b4a9567d2 \
    --hash=sha256:4061c0079120205fb760c58acab6443e217307dcf05e3702cf970e0689972856 \
    --hash=sha256:9dab55f57c74c3cad24c323bacbbd04be4705ba6eb0d92e920b1fc4837ed5079 \
    --hash=sha256:ee247f5c245c9a2fe7c8e2214e295918838e44e00a45a6718451e4004219e767 \
    --hash=sha256:f21e8a22c8605750c7af886bab299a363721264061b4ac0a30efb73cfd58efc5 \
    --hash=sha256:1981f1db4630889b9ef7803fadef12b056f428cb6b85c27ba57b774793b6093c \
    --hash=sha256:7b46165bb56eb4704e2eaaf86f3c940d19154535d9b0ca7d6d590b04060e00d5
    # via paramiko
invoke==3.0.3 \
    --hash=sha256:f11327165e5cbb89b2ad1d88d3292b5113332c43b8553b494da435d6ec6f5053 \
    --hash=sha256:437b6a622223824380bfb4e64f612711a6b648c795f565efc8625af66fb57f0c
    # via paramiko
jinja2==3.1.6 \
    --hash=sha256:85ece4451f492d0c13c5dd7c13a64681a86afae63a5f347908daf103ce6d2f67 \
    --hash=sha256:0137fb05990d35f1275a587e9aee6d56da821fc83491a0fb838183be43f66d6d
    # via cfn-chainermn
jmespath==1.1.0 \
    --hash=sha256:a5663118de4908c91729bea0acadca56526eb2698e83de10cd116ae0f4e97c64 \
    --hash=sha256:472c87d80f36026ae83c6ddd0f1d05d4e510134ed462851fd5f754c8c3cbb88d
    # via boto3, botocore
markupsafe==3.0.4 \
    --hash=sha256:6da83a088f8ef93b2d483a8232a4dbf4d69d3d8496b568a03c56becac43e1808 \
    --hash=sha256:2e9ad7dd851bf45fab9f75cbff4cb493fee9979e8d8c7c9c3ee119022518edd6
    # via jinja2
paramiko==5.1.0 \
    --hash=sha256:d9fe6d67a9d0bbf3eb85b051d26ab850b678c02d060f32915b944e5ca6d0d9e1 \
    --hash=sha256:239b5f9b2a53006cd54f83cf8495ee742083708ead947882c8dd2786de79f39b
    # via cfn-chainermn
pycparser==3.12 \
    --hash=sha256:a076f3f489b39b43ed13563a1dafe42447445bec2e294154ec5c57fcdda4c85e \
    --hash=sha256:f03387877eab82ce01bbdfd0ba7252ee55a90b1c708d5129e2ce915475cf1db6
    # via cffi
pynacl==1.6.2 \
    --hash=sha256:22de65bb9010a725b0dac248f353bb072969c94fa8d6b1f34b87d7953cf7bbe4 \
    --hash=sha256:8a66d6fb6ae7661c58995f9c6435bda2b1e68b54b598a6a10247bfcdadac996c \
    --hash=sha256:c8a231e36ec2cab018c4ad4358c386e36eede0319a0c41fed24f840b1dac59f6 \
    --hash=sha256:018494d6d696ae03c7e656e5e74cdfd8ea1326962cc401bcf018f1ed8436811c
    # via paramiko
python-dateutil==2.9.0.post0 \
    --hash=sha256:37dd54208da7e1cd875388217d5e00ebd4179249f90fb72437e91a35459a0ad3 \
    --hash=sha256:a8b2bc7bffae282281c8140a97d3aa9c14da0b136dfe83f850eea9a5f7470427
    # via botocore
pyyaml==6.0.4 \
    --hash=sha256:622aa875fa6533f25fedcffe23079357d65a690d462200afed5d8e9d0e01ebee \
    --hash=sha256:e24bf71af8a432d7808fabff134d38dfe16d3cbb41f2873bb4b1e42422de0a1a
    # via cfn-chainermn, cfn-flip
s3transfer==0.19.3 \
    --hash=sha256:24eb7535804306355e31c952a90022bf5b2f9d760f9a11062c7493a217c08553 \
    --hash=sha256:8326acc3d056d7f7b8a37110c7d2aea41f67e83f6ae79cd3b5fbcca34c726406
    # via boto3
six==1.17.0 \
    --hash=sha256:4721f391ed90541fddacab5acf947aa0d3dc7d27b2e1e8eda2be8970586c3274 \
    --hash=sha256:ff70335d468e7eb6ec65b95b99d3a2836546063f63acc5171de367e834932a81
    # via cfn-flip, python-dateutil
troposphere==4.11.1 \
    --hash=sha256:763e306c8c1029eb6371d506b4f30964efee7afa802ed440615dbbd7d225a6ee \
    --hash=sha256:bc90dd084d70c36816f1a5e3bb7c78f4262803c78896fabf7dda0d663f8c2c7e
    # via cfn-chainermn
urllib3==2.8.0 \
    --hash=sha256:0cf3cae568d36aa9576b28dfb35f11328f1cb974ca7647d9475ebb86c75ac6e3 \
    --hash=sha256:63bf2ead4c879426ebf22ef2a781eeb4aa3b4ae798a0435506f8687fd5bb9b63
    # via botocore
REQ
  "$PREFIX/bootstrap/bin/uv" pip install --python "$PREFIX/venv/bin/python" --require-hashes \
    -r "$dir/agent-requirements.txt"
  "$PREFIX/bootstrap/bin/uv" pip install --python "$PREFIX/venv/bin/python" --no-deps "$wheel"
  ln -sf "$PREFIX/venv/bin/cfn-chainermn" /usr/local/bin/cfn-chainermn
  got=$(/usr/local/bin/cfn-chainermn --version)
  [[ $got == *" 0.1.0" ]] || die "installed agent reports '$got', expected 0.1.0"
  # the node bootstrap uses a baked agent in place of its template's only when this is that wheel
  printf '%s\n' "$want" >"$PREFIX/venv/agent-wheel.sha256"
  log "node agent: $got"
  rm -rf "$dir"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
