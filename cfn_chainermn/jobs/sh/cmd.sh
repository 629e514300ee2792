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
echo "$rc" > exit_code.tmp && mv exit_code.tmp exit_code
