"""The shell scripts of a job folder, run by the master's /bin/sh (pure text).

`run.sh` starts `cmd.sh` (the mpiexec line) in a session of its own and, attached, streams the
log and runs `cancel.sh` when the client's channel closes before the job ends. They are
written into every job folder, so a job started by one version of the tool can be followed
and cancelled by another.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

# Runs the job (argv in cmd.sh) in its own session/process group; `attach` streams the log and
# cancels the group when the client's channel closes before the job ends.
RUN_SH = """#!/bin/sh
cd "$(dirname "$0")" || exit 126
: > log
exec 3<&0
setsid sh ./cmd.sh < /dev/null > /dev/null 2>&1 3<&- &
pid=$!
# setsid() happens in the child a moment later: wait for the group, so cancel can find it.
i=0
while ! kill -0 "-$pid" 2>/dev/null && kill -0 "$pid" 2>/dev/null && [ $i -lt 400 ]; do sleep 0.005; i=$((i+1)); done
echo "$pid" > pgid
if [ "${1:-detach}" != attach ]; then echo "started $pid"; exit 0; fi
( cat <&3 > /dev/null; [ -f exit_code ] || sh ./cancel.sh ) < /dev/null > /dev/null 2>&1 &
exec 3<&-
# tail notices the end within -s seconds: the whole of a short job's latency
tail -s 0.01 -n +1 --pid="$pid" -f log 2>/dev/null  # its inotify complaints are not job output
[ -f exit_code ] && exit "$(cat exit_code)"
exit 255
"""

CMD_SH = """#!/bin/sh
cd "$(dirname "$0")" || exit 126
exec >> log 2>&1 < /dev/null
{command} &
echo $! > mpiexec.pid
wait $!
rc=$?
echo "$rc" > exit_code.tmp && mv exit_code.tmp exit_code
"""

# mpiexec first (it stops its remote daemons and ranks cleanly), then the group, then KILL.
CANCEL_SH = """#!/bin/sh
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
"""

# `job logs --follow`: tail until the job's exit_code appears or its process group is gone. tail
# watches a child of this shell, not the job: a detached job is no child of ours, and where
# PID 1 does not reap orphans its finished cmd.sh stays a zombie that `--pid` takes for alive.
# This shell reaps its own child while it waits for tail, and stops it when tail ends early
# (the client went away: SIGPIPE). tail's own complaints (inotify limits) are not job output.
FOLLOW_SH = ("pg=$(cat pgid 2>/dev/null); "
             "if [ -n \"$pg\" ] && kill -0 \"-$pg\" 2>/dev/null; then "
             "( while [ ! -f exit_code ] && kill -0 \"-$pg\" 2>/dev/null; do sleep 0.1; done ) >/dev/null 2>&1 & "
             "w=$!; "
             "tail -s 0.1 -n +1 --pid=\"$w\" -f log 2>/dev/null; kill \"$w\" 2>/dev/null; "
             "else cat log; fi; i=0; while [ ! -f exit_code ] && [ $i -lt 20 ]; do sleep 0.1; i=$((i+1)); done; "
             "[ -f exit_code ] && exit \"$(cat exit_code)\"; exit 255")

# One line per job: id, state, exit code, summary.
LIST_SH = """cd {jobs} 2>/dev/null || exit 0
for d in */; do d=${{d%/}}; [ -f "$d/pgid" ] || continue
  if [ -f "$d/exit_code" ]; then rc=$(cat "$d/exit_code"); st=exited; [ -f "$d/cancelled" ] && st=cancelled
  elif kill -0 "-$(cat "$d/pgid")" 2>/dev/null; then rc=-; st=running
  else rc=-; st=lost; fi
  printf '%s\\t%s\\t%s\\t%s\\n' "$d" "$st" "$rc" "$(cat "$d/summary" 2>/dev/null)"
done
"""


def cmd_script(argv: Sequence[str]) -> str:
    return CMD_SH.format(command=shlex.join(argv))
