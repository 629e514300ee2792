#!/bin/sh
case $0 in */*) cd "${0%/*}" || exit 126;; esac
: > log
exec 3<&0
setsid sh ./cmd.sh < /dev/null > /dev/null 2>&1 3<&- &
pid=$!  # the job's process group once setsid has run in it; cmd.sh then writes pgid
if [ "${1:-detach}" != attach ]; then  # the channel closes now: see that the group exists first
  i=0; while [ ! -f pgid ] && kill -0 "$pid" 2>/dev/null && [ $i -lt 200 ]; do sleep 0.01; i=$((i+1)); done
  echo "started $pid"; exit 0
fi
( cat <&3 > /dev/null; [ -f exit_code ] || sh ./cancel.sh ) < /dev/null > /dev/null 2>&1 &
exec 3<&-
# tail notices the end within -s seconds: the whole of a short job's latency
tail -s 0.01 -n +1 --pid="$pid" -f log 2>/dev/null  # its inotify complaints are not job output
rc=255; [ ! -f exit_code ] || read -r rc < exit_code
exit "${rc:-255}"
