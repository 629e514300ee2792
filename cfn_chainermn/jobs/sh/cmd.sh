#!/bin/sh
case $0 in */*) cd "${0%/*}" || exit 126;; esac
# run.sh starts this shell under setsid: it leads the job's process group. Its start time first
# (/proc stat field 22; a group id outlives its job, so cancel.sh stops the group only while this
# is still its leader), then the group: written here, once the group exists, so run.sh need not wait.
read -r st < "/proc/$$/stat"; st=${st##*) }
# shellcheck disable=SC2086 # the fields, split on purpose
set -- $st
echo "${20}" > pgid.start && echo $$ > pgid
exec >> log 2>&1 < /dev/null
(umask 022 && exec @COMMAND@) &
echo $! > mpiexec.pid
wait $!
rc=$?
# A Spot watch's line for this job (node/spot_jobs.py: spot.ADDRESS, written whole by that node
# before it stopped its ranks) goes into the log here, by its one writer: EFS is NFS, where two
# clients' appends race (open(2), O_APPEND). Each name is looked up, not listed: the master has
# not looked it up before, so its NFS client asks the server (nfs(5), lookupcache), where a
# listing could come from its attribute cache (acdirmin). Builtins only: no process started.
while read -r a _; do
  [ ! -f "spot.$a" ] || while IFS= read -r l; do printf '%s\n' "$l"; done < "spot.$a"
done 2>/dev/null < hostfile
echo "$rc" > exit_code.tmp && mv exit_code.tmp exit_code
