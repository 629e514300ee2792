#!/bin/sh
# `job submit` in one exec channel (folder.Launch.command): write the job folder, then queue.sh
# (which waits for the job's nodes, then runs run.sh), both sourced: the same process, and no sh
# started for each (a launch's latency). Arguments: FOLDER JOB_ID MODE
# (attach|detach) WAIT (wait|nowait), then NAME TEXT pairs: our own small files,
# written with the builtin printf (no process each). The user's files come on stdin as `SIZE
# MODE NAME` lines (MODE x: executable), each followed by SIZE bytes, ended by `END`. `read`
# takes a byte at a time from a pipe and `head -c` exactly SIZE, so after END stdin belongs to
# queue.sh's and run.sh's watchdogs. A NAME is relative to the folder (folder.py allows no absolute or "..").
# MODE e (`--secret-env`): the SIZE bytes are the value of variable NAME, exported for run.sh
# and so for mpiexec, never written to a file. The folder is the cluster user's alone (umask
# 077: 0700, files 0600, executables 0700); cmd.sh gives the job itself the usual umask 022.
fail() { echo "$1"; exit 254; }
umask 077
dir=$1 id=$2 how=$3 wait=$4
shift 4
# one mkdir once the jobs folder exists (every process is launch latency); else make it, and say why not
{ { mkdir "$dir" 2>/dev/null || { mkdir -p "${dir%/*}" && mkdir "$dir"; }; } && cd "$dir"; } || fail "cannot create $dir"
while [ $# -gt 1 ]; do
  printf %s "$2" > "$1" || fail "cannot write the files of $dir"
  shift 2
done
last=
while IFS= read -r entry; do
  [ "$entry" = END ] && break
  size=${entry%% *}; rest=${entry#* }; mode=${rest%% *}; name=${rest#* }
  if [ "$mode" = e ]; then
    case $name in ''|[0-9]*|*[!A-Za-z0-9_]*) fail "bad variable name $name";; esac
    value=$(head -c "$size"; echo .)  # the dot keeps trailing newlines
    export "$name=${value%.}"
    continue
  fi
  case $name in */*) d=${name%/*}; [ "$d" = "$last" ] || mkdir -p -- "./$d" || fail "cannot create $d"; last=$d;; esac
  head -c "$size" > "./$name" || fail "cannot write $name"
  [ "$mode" = x ] && { chmod 700 -- "./$name" || fail "cannot chmod $name"; }
done
[ "$entry" = END ] || fail "upload of $id cut short"
echo "cfn-chainermn: job folder written"  # folder.LAUNCHED: the lines after it are the job's
set -- "$how" "$wait"
# shellcheck disable=SC1091 # written just now
. ./queue.sh
