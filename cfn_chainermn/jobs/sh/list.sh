#!/bin/sh
# `job list`: one record per job in the jobs folder $1: id, state (queued, running, exited,
# cancelled or lost), exit code (- while none), summary; tab-separated, each ended by a NUL byte: a summary
# holds the job's arguments, newlines and tabs included. Sent as the command itself.
# group.sh comes in front wherever this is sent or written; run alone from the package, fetch it
# shellcheck disable=SC1091
command -v job_running >/dev/null 2>&1 || . "$(dirname "$0")/group.sh"
cd "$1" 2>/dev/null || exit 0
for d in */; do d=${d%/}; rc=-
  if [ -f "$d/pgid" ]; then
    if [ -f "$d/exit_code" ]; then rc=$(cat "$d/exit_code"); st=exited; [ -f "$d/cancelled" ] && st=cancelled
    elif job_running "$d"; then st=running  # group.sh: not a stranger that took its group id
    else st=lost; fi
  elif [ ! -f "$d/queued" ]; then continue  # not written whole, or never reached the queue
  elif [ -f "$d/cancelled" ]; then st=cancelled  # while queued: nothing ran
  elif queue_alive "$d"; then st=queued; [ -f "$d/hostfile" ] && st=running  # admitted, starting
  else st=lost; fi  # its queue process was killed
  printf '%s\t%s\t%s\t%s\0' "$d" "$st" "$rc" "$(cat "$d/summary" 2>/dev/null)"
done
