#!/bin/sh
# Stop a job: mpiexec first (it stops its remote daemons and ranks cleanly), then its process
# group, then KILL what is left. Only a job that has not ended, and only while its group is still
# its own (group.sh, which goes in front of this script wherever it is written or sent). Run
# from the job folder by run.sh's watchdog, or sent as the command with the folder as $1 (`job
# cancel`, so a job started by an older version is checked as carefully). A job still in the
# queue (queue.sh) is taken out of it: its queue process group is stopped. Exit 0: stopped;
# 3: it had ended already (its exit code, if any, printed), nothing was signalled; 254: no job.
# group.sh comes in front wherever this is sent or written; run alone from the package, fetch it
# shellcheck disable=SC1091
command -v job_running >/dev/null 2>&1 || . "$(dirname "$0")/group.sh"
{ cd "${1:-$(dirname "$0")}" 2>/dev/null && [ -f cancel.sh ]; } || exit 254
ended() { cat exit_code 2>/dev/null; exit 3; }
if [ ! -f pgid ] && [ ! -f exit_code ] && [ -f queued ]; then  # not started: queued, or starting
  lock "${PWD%/*}" || exit 254  # group.sh; queue.sh admits a job under the same lock
  if [ ! -f hostfile ] && [ ! -f cancelled ] && queue_alive .; then  # waiting: stop its queue process
    echo cancelled > cancelled  # its queue entry no longer counts (queue.sh's waiting)
    # shellcheck disable=SC2154 # qp (its pid) is set by group.sh's queue_alive
    if [ "$(stat_field "$qp" 5)" = "$qp" ]; then kill -TERM "-$qp"; else kill -TERM "$qp"; fi 2>/dev/null
    unlock
    i=0; while queue_alive . && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
    queue_alive . && kill -KILL "$qp" 2>/dev/null
    exit 0
  fi
  unlock
  i=0; while [ ! -f pgid ] && queue_alive . && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done  # starting
fi
job_running . || ended  # group.sh: also sets pg and mp
# shellcheck disable=SC2154 # pg and mp are set by group.sh's job_running
alive() { kill -0 "-$pg" 2>/dev/null; }
[ -f exit_code ] || echo cancelled > cancelled
if [ -n "$mp" ] && [ "$(stat_field "$mp" 5)" = "$pg" ] && kill -TERM "$mp" 2>/dev/null; then
  i=0; while kill -0 "$mp" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
fi
alive && kill -TERM "-$pg" 2>/dev/null
i=0; while alive && [ $i -lt 30 ]; do sleep 0.1; i=$((i+1)); done
alive && kill -KILL "-$pg" 2>/dev/null
[ -f exit_code ] || { echo 143 > exit_code.cancel && mv exit_code.cancel exit_code; }  # whole, as cmd.sh writes it: list.sh never reads it empty
exit 0
