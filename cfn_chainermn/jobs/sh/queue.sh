#!/bin/sh
# The job queue on the master (docs/jobs.md, "One job per node"): submit.sh execs this from the
# written job folder as `queue.sh MODE WAIT [TICKET]` (MODE attach|detach, WAIT wait|nowait; a
# TICKET: the detached waiter taking over a place in the queue). A job gets whole nodes that no
# other job holds, since ChainerMN picks a rank's GPU by its rank on the node: two jobs sharing a
# node would share its first GPUs. `nodes` lists the nodes ready at submit, `want` the job's ranks
# and ranks per node (0: any). First come, first served, no overtaking: under the lock (flock on
# <jobs>/.lock, in the cluster user's own 0700 folder) the first waiting job takes the first free
# nodes that fit, writes them to `hostfile` (mpiexec's), becomes a holder and this process becomes
# run.sh. Entries in <jobs>/.queue: w.TICKET (the id of a waiting job) and h.JOB (a job holding
# the nodes of its hostfile); an entry counts only while its job's process lives (group.sh's
# queue_alive, job_running), so a waiter that was killed or whose client went away, or a holder
# that ended or was lost, is dropped by whoever locks next. Lines for the client start with
# "cfn-chainermn: " (runner.py); exit 75: nowait and the nodes are not free now (the folder is
# removed, nothing ran); 143: cancelled while queued. group.sh comes in front where it is written.
# shellcheck disable=SC1091
command -v job_running >/dev/null 2>&1 || . "$(dirname "$0")/group.sh"
cd "$(dirname "$0")" || exit 126
how=$1 wait=$2 ticket=${3:-} bg=${3:+yes}
id=${PWD##*/} q=../.queue dog=
say() { echo "cfn-chainermn: $*"; }
quit() { [ -z "$dog" ] || kill "$dog" 2>/dev/null; exit "$1"; }  # the watchdog holds the channel open
[ -s nodes ] || { say admitted; exec sh ./run.sh "$how"; }  # no node list: nothing to account
if ! { read -r np per < want && { [ -d "$q" ] || mkdir -p "$q"; }; }; then  # -p: two may create it at once
  say "cannot read $PWD/want or create $q"; exit 254
fi
me="$$ $(stat_field $$ 22)"
echo "$me" > queued || exit 254
trap 'say "cancelled while queued"; quit 143' TERM  # cancel.sh signals the waiter's process group

waiting() {  # entry $1 (w.TICKET) names a job that still waits: its queue process lives
  j=$(cat "$1" 2>/dev/null) && [ -n "$j" ] && [ ! -f "../$j/hostfile" ] && [ ! -f "../$j/cancelled" ] \
    && queue_alive "../$j"
}
holding() {  # job $1 still holds its nodes: it has not ended, and runs or is about to (run.sh)
  [ ! -f "../$1/exit_code" ] && { job_running "../$1" || queue_alive "../$1"; }
}
tidy() {  # under the lock: drop the entries whose process is gone
  for f in "$q"/w.*; do [ ! -f "$f" ] || waiting "$f" || rm -f "$f"; done
  for f in "$q"/h.*; do [ ! -f "$f" ] || holding "${f##*/h.}" || rm -f "$f"; done
}
first() { head=; for f in "$q"/w.*; do [ -f "$f" ] && { head=${f##*/w.}; return; }; done; }  # sets head
ahead() {  # the job this one waits for: the one queued just before it, else the oldest holder
  prev=
  for f in "$q"/w.*; do [ -f "$f" ] || continue; [ "${f##*/w.}" = "$ticket" ] && break; prev=$(cat "$f"); done
  [ -n "$prev" ] && { echo "$prev"; return; }
  for f in "$q"/h.*; do [ -f "$f" ] && { echo "${f##*/h.}"; return; }; done
}
place() {  # the lines of `nodes` this job gets now (whole nodes no holder has), or nothing
  busy=" "
  for f in "$q"/h.*; do
    [ -f "$f" ] && busy="$busy$(cut -d' ' -f1 "../${f##*/h.}/hostfile" 2>/dev/null | tr '\n' ' ')"
  done
  awk -v np="$np" -v per="$per" -v busy="$busy" '
    index(busy, " " $1 " ") { next }
    { s = $2; sub(/^slots=/, "", s); s += 0; k = np - got
      if (per > 0) { if (k > per) k = per; if (s < k) next } else if (s < k) k = s
      got += k; line[++n] = $0
      if (got >= np) { for (i = 1; i <= n; i++) print line[i]; exit } }' nodes
}
admit() {  # under the lock: take nodes $1, leave the queue, become run.sh
  { printf '%s\n' "$1" > hostfile && : > "$q/h.$id"; } || { unlock; say "cannot write $PWD/hostfile"; quit 254; }
  [ -z "$ticket" ] || rm -f "$q/w.$ticket"
  unlock
  [ -z "$dog" ] || kill "$dog" 2>/dev/null
  trap - TERM
  say admitted  # folder.ADMITTED: the lines after it are the job's
  exec sh ./run.sh "$how"
}

shown=
while :; do
  lock "${PWD%/*}" || quit 254
  tidy
  first
  if [ -z "$head" ] || [ "$head" = "$ticket" ]; then
    got=$(place)
    [ -z "$got" ] || admit "$got"
  fi
  if [ "$wait" = nowait ]; then
    behind=$(ahead)
    unlock
    cd .. && rm -rf -- "$id"
    echo "its nodes are held or queued for (behind ${behind:-another job})"
    exit 75
  fi
  if [ -z "$ticket" ]; then  # join the queue's tail
    last=$(for f in "$q"/w.*; do [ -f "$f" ] && echo "${f##*/w.}"; done | tail -n 1)
    last=${last#"${last%%[!0]*}"}  # no leading zeros: $((...)) would read octal
    ticket=$(printf %010d $((${last:-0} + 1)))
  fi
  [ -f "$q/w.$ticket" ] || echo "$id" > "$q/w.$ticket"
  behind=$(ahead)
  unlock
  [ "$behind" = "$shown" ] || { say "queued behind ${behind:-another job}"; shown=$behind; }
  if [ "$how" = attach ] && [ -z "$dog" ]; then  # the client's channel: EOF once it goes (Ctrl-C, lost, killed)
    exec 3<&0
    cat <&3 > /dev/null &
    dog=$! && dogs=$(stat_field "$dog" 22)
  fi
  if [ "$how" = detach ] && [ -z "$bg" ]; then  # a waiter of its own, in a session of its own
    setsid sh ./queue.sh detach wait "$ticket" < /dev/null >> queue.log 2>&1 &
    i=0
    while [ "$(cat queued)" = "$me" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
    [ "$(cat queued)" != "$me" ] || { say "the queue process did not start (see $PWD/queue.log)"; exit 254; }
    exit 0
  fi
  sleep 0.5
  [ -f queued ] || { say "its folder $PWD is gone"; quit 254; }  # removed by hand: nothing to run
  if [ -n "$dog" ] && ! alive "$dog" "$dogs"; then  # the client has gone: leave the queue
    lock "${PWD%/*}" && echo withdrawn > cancelled && rm -f "$q/w.$ticket"
    unlock
    quit 0
  fi
done
