#!/bin/sh
# `job logs`: the log of the job in folder $1 and its exit code (0 while it runs or waits); with
# $2 = follow, the log until the job ends and then its exit code (a queued job: once it starts).
# 254: no such job. A job that never ran and never will (cancelled or withdrawn while queued, its
# queue process gone) has no log: one line "cfn-chainermn: did not start: WHY" and exit 253
# (folder.NEVER: runner.logs makes it an error of ours, not an exit code of the job's).
# Sent as the command itself (runner.logs), so nothing is installed on the master.
# group.sh comes in front wherever this is sent or written; run alone from the package, fetch it
# shellcheck disable=SC1091
command -v job_running >/dev/null 2>&1 || . "$(dirname "$0")/group.sh"
cd "$1" 2>/dev/null || exit 254
never() {  # the job never started and never will: say why, exit 253
  [ ! -f pgid ] && [ ! -f exit_code ] && [ -f queued ] || return 0
  why=; read -r why 2>/dev/null < cancelled
  case $why in
    withdrawn) why="its client went away while it was queued";;
    ?*) why="cancelled while queued";;
    *) ! queue_alive . || return 0; why="its queue process is gone (killed, or the master restarted)";;
  esac
  echo "cfn-chainermn: did not start: $why"; exit 253
}
if [ "${2:-}" != follow ]; then
  never
  [ ! -f log ] || cat log  # none while queued
  [ -f exit_code ] && exit "$(cat exit_code)"
  exit 0
fi
# Tail until the job's exit_code appears or its process group is gone. tail watches a child of
# this shell, not the job: a detached job is no child of ours, and where PID 1 does not reap
# orphans its finished cmd.sh stays a zombie that `--pid` takes for alive. This shell reaps its
# own child while it waits for tail, and stops it when tail ends early (the client went away:
# SIGPIPE). tail's own complaints (inotify limits) are not job output.
while [ ! -f pgid ] && [ ! -f cancelled ] && queue_alive .; do sleep 0.2; done  # queued: until it starts
never
if job_running .; then  # group.sh (sets pg): a stranger that took the group id is not followed
  # shellcheck disable=SC2154 # pg is set by group.sh's job_running
  ( while [ ! -f exit_code ] && kill -0 "-$pg" 2>/dev/null; do sleep 0.1; done ) >/dev/null 2>&1 &
  w=$!
  tail -s 0.1 -n +1 --pid="$w" -f log 2>/dev/null
  kill "$w" 2>/dev/null
elif [ -f log ]; then
  cat log
fi
i=0
while [ ! -f exit_code ] && [ $i -lt 20 ]; do sleep 0.1; i=$((i+1)); done
[ -f exit_code ] && exit "$(cat exit_code)"
exit 255
