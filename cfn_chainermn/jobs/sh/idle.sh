#!/bin/sh
# Idle shutdown's way into the jobs folder $1 (node/idle_probe.py sends this with list.sh after
# it). The master's agent runs it as the cluster user, never as root, so a link or a FIFO the user
# planted is only ever opened with the user's own rights; in a process group of its own that the
# agent kills whole at a timeout, so a FIFO or a hung NFS (EFS) mount blocks only this.
# Exit 3: no such folder (the shared folder lists no such name); 4: a link, or a folder entered
# through one (not followed: list.sh would read the folder it leads to); 5: not a folder this user
# can enter and list, or one an I/O error hides (cannot tell, never "no jobs").
name=${1##*/}
cd -P -- "${1%/*}/" 2>/dev/null || exit 5  # the shared folder: a root-made path, no link of the user's
top=$(pwd -P)
want="${top%/}/$name"
if ! [ -e "$name" ] && ! [ -L "$name" ]; then
    # stat failed: no such name (ENOENT), or an I/O error on it (EIO, ESTALE, a dead mount's
    # ENOTCONN), which `[ -e ]` does not tell apart. The folder's own listing does: missing only
    # when it lists no such name; a name it lists, or a listing that fails, cannot tell
    entries=$(ls -a -- . 2>/dev/null) || exit 5
    case "
$entries
" in *"
$name
"*) exit 5 ;; esac
    exit 3
fi
[ -L "$name" ] && exit 4
cd -P -- "$name" 2>/dev/null || exit 5
# entered by name: a link swapped in after the test above was followed, so the folder entered
# must be the one named (its physical path), which closes the test-then-enter race
[ "$(pwd -P)" = "$want" ] || exit 4
[ -r . ] && [ -x . ] || exit 5  # else list.sh's */ would match nothing: "no jobs" on a guess
