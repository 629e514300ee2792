"""Each rank prints the --files file and a module of the --files folder (both found in its working
folder, the job's) and its --env values."""
import os
from pathlib import Path

from helpers.tag import TAG  # helpers/ came as a --files folder, next to this script
from mpi4py import MPI

rank = MPI.COMM_WORLD.Get_rank()
data = Path("data.txt").read_text().strip()
print(f"rank {rank}: data={data} tag={TAG} FOO={os.environ.get('FOO')} BAZ={os.environ.get('BAZ')}", flush=True)
