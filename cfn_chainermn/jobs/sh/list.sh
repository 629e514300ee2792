#!/bin/sh
# `job list`: one line per job in the jobs folder $1: id, state (running, exited, cancelled or
# lost), exit code (- while none), summary; tab-separated. Sent as the command itself.
cd "$1" 2>/dev/null || exit 0
for d in */; do d=${d%/}; [ -f "$d/pgid" ] || continue
  if [ -f "$d/exit_code" ]; then rc=$(cat "$d/exit_code"); st=exited; [ -f "$d/cancelled" ] && st=cancelled
  elif kill -0 "-$(cat "$d/pgid")" 2>/dev/null; then rc=-; st=running
  else rc=-; st=lost; fi
  printf '%s\t%s\t%s\t%s\n' "$d" "$st" "$rc" "$(cat "$d/summary" 2>/dev/null)"
done
