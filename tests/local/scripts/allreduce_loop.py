"""Every rank joins an allreduce every 0.2 s for SECONDS (argv[1]); rank 0 prints each second.
A lost peer leaves the others blocked in the allreduce: the hang a Spot interruption causes."""
import sys
import time

from mpi4py import MPI

comm = MPI.COMM_WORLD
seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
for step in range(seconds * 5):
    total = comm.allreduce(1)
    if comm.Get_rank() == 0 and step % 5 == 0:
        print(f"step {step // 5}: {total} ranks", flush=True)
    time.sleep(0.2)
if comm.Get_rank() == 0:
    print("finished", flush=True)
