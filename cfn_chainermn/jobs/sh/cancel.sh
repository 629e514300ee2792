#!/bin/sh
cd "$(dirname "$0")" || exit 126
[ -f pgid ] || exit 0
pg=$(cat pgid)
alive() { kill -0 "-$pg" 2>/dev/null; }
alive || exit 0
[ -f exit_code ] || echo cancelled > cancelled
mp=$(cat mpiexec.pid 2>/dev/null)
if [ -n "$mp" ] && kill -TERM "$mp" 2>/dev/null; then
  i=0; while kill -0 "$mp" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
fi
alive && kill -TERM "-$pg" 2>/dev/null
i=0; while alive && [ $i -lt 30 ]; do sleep 0.1; i=$((i+1)); done
alive && kill -KILL "-$pg" 2>/dev/null
[ -f exit_code ] || echo 143 > exit_code
exit 0
