"""Every rank writes `start JOB RANK` to the file argv[1], waits until argv[2] exists (the test's
go-ahead), then writes `end JOB RANK`: the file tells in which order the jobs' ranks ran."""
import os
import sys
import time

from mpi4py import MPI

rank = MPI.COMM_WORLD.Get_rank()
job = os.path.basename(os.getcwd())  # the job folder, the ranks' working folder
log, go = sys.argv[1], sys.argv[2]


def note(what: str) -> None:
    with open(log, "a") as fh:  # O_APPEND: one short write per line, never interleaved
        fh.write(f"{what} {job} {rank}\n")


note("start")
while not os.path.exists(go):
    time.sleep(0.1)
MPI.COMM_WORLD.Barrier()
note("end")
