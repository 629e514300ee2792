#!/bin/sh
cd "$(dirname "$0")" || exit 126
: > log
exec 3<&0
setsid sh ./cmd.sh < /dev/null > /dev/null 2>&1 3<&- &
pid=$!
# setsid() happens in the child a moment later: wait for the group, so cancel can find it.
i=0
while ! kill -0 "-$pid" 2>/dev/null && kill -0 "$pid" 2>/dev/null && [ $i -lt 400 ]; do sleep 0.005; i=$((i+1)); done
# The leader's start time (/proc/PID/stat field 22; its name, sh or setsid, has no space): a
# group id outlives its job, so cancel.sh stops a group only while this is still its leader.
cut -d' ' -f22 "/proc/$pid/stat" > pgid.start 2>/dev/null
echo "$pid" > pgid
if [ "${1:-detach}" != attach ]; then echo "started $pid"; exit 0; fi
( cat <&3 > /dev/null; [ -f exit_code ] || sh ./cancel.sh ) < /dev/null > /dev/null 2>&1 &
exec 3<&-
# tail notices the end within -s seconds: the whole of a short job's latency
tail -s 0.01 -n +1 --pid="$pid" -f log 2>/dev/null  # its inotify complaints are not job output
[ -f exit_code ] && exit "$(cat exit_code)"
exit 255
