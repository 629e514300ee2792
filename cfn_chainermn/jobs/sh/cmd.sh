#!/bin/sh
cd "$(dirname "$0")" || exit 126
exec >> log 2>&1 < /dev/null
(umask 022 && exec @COMMAND@) &
echo $! > mpiexec.pid
wait $!
rc=$?
echo "$rc" > exit_code.tmp && mv exit_code.tmp exit_code
