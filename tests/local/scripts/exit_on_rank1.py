"""Rank 1 exits 3, the others 0: `job submit` must return 3."""
import sys

from mpi4py import MPI

rank = MPI.COMM_WORLD.Get_rank()
print(f"rank {rank} of {MPI.COMM_WORLD.Get_size()}", flush=True)
sys.exit(3 if rank == 1 else 0)
