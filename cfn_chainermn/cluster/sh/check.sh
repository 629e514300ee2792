#!/bin/sh
# `cluster check` on the master, as the cluster user: one ssh per node, all at once, each with a
# short ConnectTimeout and a hard bound of three times it, so a dead node is named within seconds
# and 16 nodes take about as long as 2. Prints one block per node, in the order given:
#   == ID
#   | each line probe.sh printed there (or ssh's own complaint), after `| `
#   rc=SSH'S EXIT CODE (124: no answer within the bound, after a line saying the bound in seconds)
# A node whose id is refused has the block `== #N` instead, N its position (counted from 1).
# Only check.sh's own lines start at the margin, and none of them holds a value from the cluster:
# what a node printed is marked `| `, and a refused id, address or fabric is never echoed, so
# neither a node nor an address can forge another node's block (`== ...`) or its rc line.
#
# Arguments: PROBE TIMEOUT PORT SSH_CONFIG, then ID ADDRESS FABRIC for each node. PROBE is the text
# of probe.sh, which each node runs as `sh -s FABRIC` (efa: count EFA devices too, else tcp);
# SSH_CONFIG is empty for ssh's default. IDs and addresses are only ever words of ssh's argv and
# printf's arguments, never shell text, and the files that collect the answers are named by
# position: an id or address the cluster reported cannot run code here or write outside the
# scratch folder. One that is not a plain word (an id with a newline could forge another node's
# block; an address with a leading `-` would be an ssh option) is refused, and says so in that
# node's block. The scratch folder goes on any exit, and on INT, TERM or HUP (a ^C on the client
# closes the channel); the ssh left running then stop at their own bound.
probe=$1 timeout=$2 port=$3 config=$4
shift 4
for number in "$timeout" "$port"; do
  case $number in
    '' | *[!0-9]*) echo "check.sh: timeout ($timeout) and port ($port) must be whole numbers" >&2; exit 2 ;;
  esac
done
d=$(mktemp -d) || exit 1
trap 'rm -rf "$d"' EXIT
trap 'exit 130' INT TERM HUP
printf '%s\n' "$probe" > "$d/probe"
n=0
while [ $# -ge 3 ]; do
  n=$((n + 1))
  id=$1 address=$2 fabric=$3
  shift 3
  (
    case $id in
      '' | *[!A-Za-z0-9._-]*) echo "== #$n"; echo "refused: node id is not a plain word"; echo "rc=2"; exit 0 ;;
    esac
    echo "== $id"
    case $address in
      '' | -* | *[!A-Za-z0-9.:-]*) echo "refused: node address is not a plain word"; echo "rc=2"; exit 0 ;;
    esac
    case $fabric in
      efa | tcp) ;;
      *) echo "refused: fabric is neither efa nor tcp"; echo "rc=2"; exit 0 ;;
    esac
    timeout $((timeout * 3)) ssh ${config:+-F "$config"} -o BatchMode=yes -o "ConnectTimeout=$timeout" \
      -p "$port" -- "$address" sh -s "$fabric" < "$d/probe" > "$d/$n.out" 2>&1
    rc=$?
    awk '{ print "| " $0 }' "$d/$n.out"
    [ "$rc" -ne 124 ] || echo "no answer within $((timeout * 3))s"
    echo "rc=$rc"
  ) > "$d/$n" 2>&1 &
done
wait
i=1
while [ "$i" -le "$n" ]; do
  cat "$d/$i"
  i=$((i + 1))
done
