#!/bin/sh
# The job queue on the master (docs/jobs.md, "One job per node"): submit.sh sources this in the
# written job folder as `queue.sh MODE WAIT [TICKET]` (MODE attach|detach, WAIT wait|nowait; a
# TICKET: the detached waiter taking over a place in the queue). A job gets whole nodes that no
# other job holds, since ChainerMN picks a rank's GPU by its rank on the node: two jobs sharing a
# node would share its first GPUs. The nodes are the master's ready set as it is now: the
# hostfile the node agent keeps in the cluster user's home (node/steps.py), $HOME/hostfile in the
# job's channel (OpenSSH's session.c do_setup_env sets HOME from the passwd entry, which useradd
# -d made that home; a local cluster run by an ordinary user: its sshd_config's SetEnv HOME), else
# `nodes`, those ready at submit; a node whose Spot watch wrote <jobs>/.queue/gone.ADDRESS less
# than 5 minutes ago is not given (node/spot.py: the notice is 2 minutes ahead, and one refresh
# after the end the hostfile no longer lists it; GNU find's -mmin -5: under 300 s). `want`: the
# job's ranks and ranks per node (0: any). First come, first served, no overtaking: under the
# lock (flock on <jobs>/.lock, in the cluster user's own 0700 folder) the first waiting job takes
# the first free nodes that fit, writes them to `hostfile` (mpiexec's), becomes a holder and this
# process becomes run.sh (sourced too: no new sh). Entries in <jobs>/.queue: w.TICKET (the id of
# a waiting job) and h.JOB (a job holding the nodes of its hostfile); an entry counts only while
# its job's process lives (group.sh's queue_alive, job_running), so a waiter that was killed or
# whose client went away, or a holder that ended or was lost, is dropped by whoever locks next.
# Lines for the client start with "cfn-chainermn: " (runner.py: "queued..." is news, any other
# line before "admitted" says why the job did not start); exit 75: nowait and the nodes are not
# free now (the folder is removed, nothing ran); 143: cancelled while queued; 254: the queue
# failed (nothing ran). The fast path (nobody holds or waits) starts no process but flock: each
# one is launch latency (benchmarks/bench_jobs.py). group.sh comes in front where it is written.
# shellcheck disable=SC1091
command -v job_running >/dev/null 2>&1 || . "$(dirname "$0")/group.sh"
case $0 in */*) cd "${0%/*}" || exit 126;; esac
how=$1 wait=$2 ticket=${3:-} bg=${3:+yes}
id=${PWD##*/} q=../.queue dog=
say() { echo "cfn-chainermn: $*"; }
quit() { [ -z "$dog" ] || kill "$dog" 2>/dev/null; exit "$1"; }  # the watchdog holds the channel open
# shellcheck disable=SC1091 # run.sh, sourced: this process becomes it without starting a new sh
[ -s nodes ] || { say admitted; set -- "$how"; . ./run.sh; }  # no node list: nothing to account
if ! { read -r np per < want && { [ -d "$q" ] || mkdir -p "$q"; }; }; then  # -p: two may create it at once
  say "cannot read $PWD/want or create $q"; exit 254
fi
# shellcheck disable=SC2154 # fv is set by group.sh's field
{ field $$ 22 && me="$$ $fv" && echo "$me" > queued; } || { say "cannot write $PWD/queued"; exit 254; }
trap 'say "cancelled while queued"; quit 143' TERM  # cancel.sh signals the waiter's process group

waiting() {  # entry $1 (w.TICKET) names a job that still waits: its queue process lives
  j=; read -r j 2>/dev/null < "$1"; [ -n "$j" ] && [ ! -f "../$j/hostfile" ] && [ ! -f "../$j/cancelled" ] \
    && queue_alive "../$j"
}
holding() {  # job $1 still holds its nodes: it has not ended, and runs or is about to (run.sh)
  [ ! -f "../$1/exit_code" ] && { job_running "../$1" || queue_alive "../$1"; }
}
tidy() {  # under the lock: drop the entries whose process is gone; sets gone (fresh Spot notices)
  for f in "$q"/w.*; do [ ! -f "$f" ] || waiting "$f" || rm -f "$f"; done
  for f in "$q"/h.*; do [ ! -f "$f" ] || holding "${f##*/h.}" || rm -f "$f"; done
  gone=" "
  for f in "$q"/gone.*; do  # find only when there is one: older than 5 minutes, removed
    [ -e "$f" ] || [ -L "$f" ] || break
    gone=" $(find "$q" -maxdepth 1 -name 'gone.*' -type f \( -mmin -5 -printf '%f ' -o -delete \))"
    break
  done
}
first() { head=; for f in "$q"/w.*; do [ -f "$f" ] && { head=${f##*/w.}; return; }; done; }  # sets head
ahead() {  # the job this one waits for: the one queued just before it, else the oldest holder
  prev=
  for f in "$q"/w.*; do [ -f "$f" ] || continue; [ "${f##*/w.}" = "$ticket" ] && break; read -r prev < "$f"; done
  [ -n "$prev" ] && { echo "$prev"; return; }
  for f in "$q"/h.*; do [ -f "$f" ] && { echo "${f##*/h.}"; return; }; done
}
ready() {  # sets src: the ready set now (the agent's hostfile), else the nodes ready at submit
  src=$HOME/hostfile; [ -n "$HOME" ] && [ -s "$src" ] || src=nodes
}
held() {  # sets busy: the addresses in the hostfiles of the holders
  busy=" "
  for f in "$q"/h.*; do
    [ -f "$f" ] || continue
    while read -r a _; do busy="$busy$a "; done 2>/dev/null < "../${f##*/h.}/hostfile"
  done
}
fit() {  # sets got: the lines of the ready set this job gets, whole nodes not in " $1 " (busy), or
  # nothing; then nodes/slots count the ready ones (the gone left out) that were looked at
  got='' n=0 nodes=0 slots=0
  while read -r a s _; do
    s=${s#slots=}; case $s in ''|*[!0-9]*) continue;; esac
    case "$gone" in *" gone.$a "*) continue;; esac
    [ "$s" -gt 0 ] || continue
    nodes=$((nodes + 1)) slots=$((slots + s))
    case "$1" in *" $a "*) continue;; esac
    k=$((np - n))
    if [ "$per" -gt 0 ]; then [ "$k" -le "$per" ] || k=$per; [ "$s" -ge "$k" ] || continue
    elif [ "$s" -lt "$k" ]; then k=$s; fi
    n=$((n + k)) got="$got$a slots=$s
"
    [ "$n" -lt "$np" ] || return 0
  done < "$src"
  got=
}
short() {  # sets short: why the job cannot run even on free nodes (the ready set is too small), or ""
  short=; fit " "; [ -z "$got" ] || return 0
  if [ "$per" -gt 0 ]; then short="needs $np ranks ($per per node), $nodes ready"
  else short="needs $np ranks, $nodes ready ($slots slots)"; fi
}
admit() {  # under the lock: take nodes $1, leave the queue, become run.sh
  { printf %s "$1" > hostfile && : > "$q/h.$id"; } || { unlock; say "cannot write $PWD/hostfile"; quit 254; }
  [ -z "$ticket" ] || rm -f "$q/w.$ticket"
  unlock
  [ -z "$dog" ] || kill "$dog" 2>/dev/null
  trap - TERM
  say admitted  # folder.ADMITTED: the lines after it are the job's
  set -- "$how"
  # shellcheck disable=SC1091
  . ./run.sh
}

shown=
while :; do
  lock "${PWD%/*}" || quit 254
  tidy
  first
  short=
  if [ -z "$head" ] || [ "$head" = "$ticket" ]; then
    ready; held; fit "$busy"
    [ -z "$got" ] || admit "$got"
    short
  fi
  if [ "$wait" = nowait ]; then
    behind=$(ahead)
    unlock
    cd .. && rm -rf -- "$id"
    if [ -n "$short" ]; then echo "not enough ready nodes: $short"
    else echo "its nodes are held or queued for (behind ${behind:-another job})"; fi
    exit 75
  fi
  if [ -z "$ticket" ]; then  # join the queue's tail
    last=$(for f in "$q"/w.*; do [ -f "$f" ] && echo "${f##*/w.}"; done | tail -n 1)
    last=${last#"${last%%[!0]*}"}  # no leading zeros: $((...)) would read octal
    ticket=$(printf %010d $((${last:-0} + 1)))
  fi
  [ -f "$q/w.$ticket" ] || echo "$id" > "$q/w.$ticket"
  if [ -n "$short" ]; then news="queued: waiting for ready nodes: $short"
  else behind=$(ahead); news="queued behind ${behind:-another job}"; fi
  unlock
  [ "$news" = "$shown" ] || { say "$news"; shown=$news; }
  if [ "$how" = attach ] && [ -z "$dog" ]; then  # the client's channel: EOF once it goes (Ctrl-C, lost, killed)
    exec 3<&0
    cat <&3 > /dev/null &
    dog=$! && field "$dog" 22 && dogs=$fv
  fi
  if [ "$how" = detach ] && [ -z "$bg" ]; then  # a waiter of its own, in a session of its own
    setsid sh ./queue.sh detach wait "$ticket" < /dev/null >> queue.log 2>&1 &
    w=$! i=0 now=$me  # until it has written its own `queued`, or died (sleep's wait reaps it)
    while [ "$now" = "$me" ] && kill -0 "$w" 2>/dev/null && [ $i -lt 200 ]; do
      sleep 0.05; i=$((i+1)); read -r now < queued
    done
    read -r now < queued
    [ "$now" != "$me" ] || { say "the queue process did not start (see $PWD/queue.log)"; exit 254; }
    exit 0
  fi
  { sleep 0.5; } 2>/dev/null  # cancel.sh's TERM to the group kills it too: sh's "Terminated" is not news
  [ -f queued ] || { say "its folder $PWD is gone"; quit 254; }  # removed by hand: nothing to run
  if [ -n "$dog" ] && ! alive "$dog" "$dogs"; then  # the client has gone: leave the queue
    lock "${PWD%/*}" && echo withdrawn > cancelled && rm -f "$q/w.$ticket"
    unlock
    quit 0
  fi
done
