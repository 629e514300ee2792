"""Each rank prints the --files file (read from its working folder, the job's) and its --env values."""
import os
from pathlib import Path

from mpi4py import MPI

rank = MPI.COMM_WORLD.Get_rank()
data = Path("data.txt").read_text().strip()
print(f"rank {rank}: data={data} FOO={os.environ.get('FOO')} BAZ={os.environ.get('BAZ')}", flush=True)
