#!/bin/sh
# Stop a job: mpiexec first (it stops its remote daemons and ranks cleanly), then its process
# group, then KILL what is left. Only a job that has not ended, and only while its group is still
# its own: the saved group id outlives the job and may name another process group by now. Run
# from the job folder by run.sh's watchdog, or sent as the command with the folder as $1 (`job
# cancel`, so a job started by an older version is checked as carefully). Exit 0: stopped;
# 3: it had ended already (its exit code, if any, printed), nothing was signalled; 254: no job.
{ cd "${1:-$(dirname "$0")}" 2>/dev/null && [ -f cancel.sh ]; } || exit 254
ended() { cat exit_code 2>/dev/null; exit 3; }
[ -f exit_code ] && ended
[ -f pgid ] || ended
pg=$(cat pgid)
alive() { kill -0 "-$pg" 2>/dev/null; }
field() {  # field $2 (3 or more) of /proc/$1/stat: the name before it may hold spaces and ")"
  f=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  n=$2; f=${f##*) }
  # shellcheck disable=SC2086 # the fields, split on purpose
  set -- $f; shift $((n - 3)); echo "$1"
}
here=$(pwd -P)
ours() {  # the group is this job's: its leader is the one run.sh started, else mpiexec is in it
  if [ -e "/proc/$pg" ]; then
    want=$(cat pgid.start 2>/dev/null)
    if [ -n "$want" ]; then [ "$(field "$pg" 22)" = "$want" ]; else [ "$(readlink "/proc/$pg/cwd")" = "$here" ]; fi
  else
    [ -n "$mp" ] && [ "$(field "$mp" 5)" = "$pg" ] && [ "$(readlink "/proc/$mp/cwd")" = "$here" ]
  fi
}
mp=$(cat mpiexec.pid 2>/dev/null)
{ alive && ours; } || ended
[ -f exit_code ] || echo cancelled > cancelled
if [ -n "$mp" ] && [ "$(field "$mp" 5)" = "$pg" ] && kill -TERM "$mp" 2>/dev/null; then
  i=0; while kill -0 "$mp" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
fi
alive && kill -TERM "-$pg" 2>/dev/null
i=0; while alive && [ $i -lt 30 ]; do sleep 0.1; i=$((i+1)); done
alive && kill -KILL "-$pg" 2>/dev/null
[ -f exit_code ] || echo 143 > exit_code
exit 0
