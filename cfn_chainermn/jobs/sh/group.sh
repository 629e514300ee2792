#!/bin/sh
# Shared by cancel.sh, list.sh and logs.sh (put in front of each where it is sent or written):
# is the job in folder $1 still running as its own process group? The saved group id outlives
# the job and may name another process group by now, so the group counts as the job's only while
# its leader is the one run.sh started (pgid.start: its start time; a job from an older version:
# the leader's cwd is the folder); with the leader gone, mpiexec must still be in the group, in
# the folder. Sets pg (the group) and mp (mpiexec's pid, may be empty) for the caller.
stat_field() {  # field $2 (3 or more) of /proc/$1/stat: the name before it may hold spaces and ")"
  f=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
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
