#!/bin/sh
# Shared by cancel.sh, list.sh, logs.sh and queue.sh (put in front of each where it is sent or written):
# is the job in folder $1 still running as its own process group? The saved group id outlives
# the job and may name another process group by now, so the group counts as the job's only while
# its leader is the one cmd.sh recorded (pgid.start: its start time; a job from an older version:
# the leader's cwd is the folder); with the leader gone, mpiexec must still be in the group, in
# the folder. Sets pg (the group) and mp (mpiexec's pid, may be empty) for the caller. Also the
# queue's (queue.sh): whether a process is still the one that was recorded, and its lock. Files
# are read with `read`, not cat, and /proc with `field`, not a subshell: the queue asks this often,
# and every process is a launch's latency (benchmarks/bench_jobs.py).
field() {  # sets fv to field $2 (3 or more) of /proc/$1/stat: the name before it may hold spaces and ")"
  fv=; read -r fv 2>/dev/null < "/proc/$1/stat" || return 1
  n=$2; fv=${fv##*) }
  # shellcheck disable=SC2086 # the fields, split on purpose
  set -- $fv; shift $((n - 3)); fv=$1
}
# shellcheck disable=SC2317 # stat_field: only cancel.sh calls it
stat_field() { field "$1" "$2" && echo "$fv"; }  # the same, printed
job_running() {
  [ -f "$1/exit_code" ] && return 1
  pg=; read -r pg 2>/dev/null < "$1/pgid"; [ -n "$pg" ] && kill -0 "-$pg" 2>/dev/null || return 1
  mp=; read -r mp 2>/dev/null < "$1/mpiexec.pid"
  if [ -e "/proc/$pg" ]; then
    want=; read -r want 2>/dev/null < "$1/pgid.start"
    if [ -n "$want" ]; then field "$pg" 22 && [ "$fv" = "$want" ]; else [ "$(readlink "/proc/$pg/cwd")" = "$(cd "$1" && pwd -P)" ]; fi
  else
    [ -n "$mp" ] && field "$mp" 5 && [ "$fv" = "$pg" ] && [ "$(readlink "/proc/$mp/cwd")" = "$(cd "$1" && pwd -P)" ]
  fi
}
alive() {  # process $1 lives (no zombie) and started at $2 (/proc stat field 22): not a reused pid
  [ -n "$1" ] && [ -n "$2" ] && field "$1" 22 && [ "$fv" = "$2" ] && field "$1" 3 && [ "$fv" != Z ]
}
queue_alive() {  # the queue process of job folder $1 (its `queued`: PID START) still lives
  qp='' qs=''; read -r qp qs 2>/dev/null < "$1/queued" && alive "$qp" "$qs"
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
