#!/bin/sh
# Shared by cancel.sh, list.sh, logs.sh and queue.sh (put in front of each where it is sent or written):
# is the job in folder $1 still running as its own process group? The saved group id outlives
# the job and may name another process group by now, so the group counts as the job's only while
# its leader is the one run.sh started (pgid.start: its start time; a job from an older version:
# the leader's cwd is the folder); with the leader gone, mpiexec must still be in the group, in
# the folder. Sets pg (the group) and mp (mpiexec's pid, may be empty) for the caller. Also the
# queue's (queue.sh): whether a process is still the one that was recorded, and its lock.
stat_field() {  # field $2 (3 or more) of /proc/$1/stat: the name before it may hold spaces and ")"
  read -r f 2>/dev/null < "/proc/$1/stat" || return 1  # no cat: the queue asks this often
  n=$2; f=${f##*) }
  # shellcheck disable=SC2086 # the fields, split on purpose
  set -- $f; shift $((n - 3)); echo "$1"
}
job_running() {
  [ -f "$1/exit_code" ] && return 1
  pg=$(cat "$1/pgid" 2>/dev/null) && [ -n "$pg" ] && kill -0 "-$pg" 2>/dev/null || return 1
  mp=$(cat "$1/mpiexec.pid" 2>/dev/null)
  here=$(cd "$1" && pwd -P) || return 1
  if [ -e "/proc/$pg" ]; then
    want=$(cat "$1/pgid.start" 2>/dev/null)
    if [ -n "$want" ]; then [ "$(stat_field "$pg" 22)" = "$want" ]; else [ "$(readlink "/proc/$pg/cwd")" = "$here" ]; fi
  else
    [ -n "$mp" ] && [ "$(stat_field "$mp" 5)" = "$pg" ] && [ "$(readlink "/proc/$mp/cwd")" = "$here" ]
  fi
}
alive() {  # process $1 lives (no zombie) and started at $2 (/proc stat field 22): not a reused pid
  [ -n "$1" ] && [ -n "$2" ] && [ "$(stat_field "$1" 22)" = "$2" ] && [ "$(stat_field "$1" 3)" != Z ]
}
queue_alive() {  # the queue process of job folder $1 (its `queued`: PID START) still lives
  read -r qp qs 2>/dev/null < "$1/queued" && alive "$qp" "$qs"
}
# shellcheck disable=SC2317 # lock and unlock: only cancel.sh and queue.sh call them
lock() {  # the job queue's lock: flock on <jobs>/.lock ($1: the jobs folder) on fd 9, until unlock
  [ ! -L "$1/.lock" ] || { echo "$1/.lock is a link; refusing it"; return 1; }
  exec 9>>"$1/.lock" && flock 9
}
# Closing the descriptor releases the lock (flock(2): once no descriptor of that open file is
# left; nothing forked under the lock outlives it), one process fewer than `flock -u`.
# shellcheck disable=SC2317
unlock() { exec 9>&-; }
