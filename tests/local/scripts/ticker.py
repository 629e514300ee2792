"""Every rank sleeps SECONDS (argv[1]) in 1 s steps; rank 0 prints a tick each second."""
import sys
import time

from mpi4py import MPI

rank = MPI.COMM_WORLD.Get_rank()
seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
for i in range(seconds):
    if rank == 0:
        print(f"tick {i}", flush=True)
    time.sleep(1)
MPI.COMM_WORLD.Barrier()
if rank == 0:
    print("finished", flush=True)
