#!/usr/bin/env bash
# The system half of the CUDA 12 Chainer stack, shared by the AMI recipe (ami/scripts/20-cuda.sh
# includes it) and the node agent (node/chainer_stack.py runs it as root at first boot).
#
# usage: gpu-stack.sh SELECT LINK LDCONF
#   SELECT  a glob of CUDA toolkit dirs, e.g. '/usr/local/cuda-12.*': the newest (sort -V) with
#           bin/nvcc wins. The 2026 Deep Learning Base AMIs ship 12.8, 12.9, 13.0 and 13.2 side by
#           side and /usr/local/cuda points at 13.2, which CuPy 13 (cupy-cuda12x) cannot use.
#   LINK    the link pointed at that dir (CUDA_PATH for the cluster user: cupy-cuda12x 13.6.0's
#           cupy/_environment.py _get_cuda_path() takes CUDA_PATH first, then nvcc on PATH, then
#           /usr/local/cuda).
#   LDCONF  the /etc/ld.so.conf.d file that puts the image's NCCL dir on the loader path.
#           CuPy 13.6.0 loads NCCL in cupy/cuda/nccl.py: _environment._preload_library('nccl')
#           tries an nvidia-nccl-cu12 wheel, then ~/.cupy/cuda_lib (CUPY_CUDA_LIB_PATH), then
#           ctypes.CDLL('libnccl.so.2.25.1') (the exact version in cupy/.data/_wheel.json); when
#           none loads, `import cupy_backends.cuda.libs.nccl` links libnccl.so.2 through the
#           dynamic loader. So the image's copy, the one aws-ofi-nccl was built for, is used when
#           no nvidia-nccl-cu12 is installed (never) and its dir is on the loader path (here).
# LDCONFIG (default ldconfig) is what refreshes the loader's cache; tests set it to `true`.
set -euo pipefail
# START OF FUNCTIONS
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

# END OF FUNCTIONS (the AMI recipe includes the lines above; ami/render.py shared_functions)
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  (($# == 3)) || { echo "usage: $0 SELECT LINK LDCONF" >&2; exit 2; }
  gpu_stack_main "$@"
fi
