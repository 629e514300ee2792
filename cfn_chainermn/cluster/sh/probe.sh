#!/bin/sh
# `cluster check` on one node: check.sh sends this text as ssh's input, run there as `sh -s FABRIC`.
# Prints gpus=N (NVIDIA device nodes /dev/nvidia0, 1, ...: shell builtins only, so 16 probes stay
# cheap) and cpus=N; with FABRIC efa also fi_info's domain lines, marked `efa domain:`, as libfabric
# (and so NCCL) sees the EFA devices, or efa=no-fi_info (the EFA installer's bin may be off PATH).
# All of it is one function, read whole before it runs, and its commands read /dev/null: none of
# them can eat the rest of the script from the input they share with the shell reading it.
probe() {
  g=0
  for f in /dev/nvidia[0-9]*; do
    [ -e "$f" ] && g=$((g + 1))
  done
  echo "gpus=$g"
  echo "cpus=$(nproc)"
  [ "$1" = efa ] || return 0
  f=$(command -v fi_info || echo /opt/amazon/efa/bin/fi_info)
  if [ -x "$f" ]; then
    "$f" -p efa 2>&1 | sed -n 's/^[[:space:]]*domain:/efa domain:/p'
  else
    echo "efa=no-fi_info"
  fi
}
probe "${1:-tcp}" < /dev/null
