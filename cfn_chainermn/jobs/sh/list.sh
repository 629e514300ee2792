#!/bin/sh
# `job list`: one record per job in the jobs folder $1: id, state (running, exited, cancelled or
# lost), exit code (- while none), summary; tab-separated, each ended by a NUL byte: a summary
# holds the job's arguments, newlines and tabs included. Sent as the command itself.
cd "$1" 2>/dev/null || exit 0
for d in */; do d=${d%/}; [ -f "$d/pgid" ] || continue
  if [ -f "$d/exit_code" ]; then rc=$(cat "$d/exit_code"); st=exited; [ -f "$d/cancelled" ] && st=cancelled
  elif kill -0 "-$(cat "$d/pgid")" 2>/dev/null; then rc=-; st=running
  else rc=-; st=lost; fi
  printf '%s\t%s\t%s\t%s\0' "$d" "$st" "$rc" "$(cat "$d/summary" 2>/dev/null)"
done
