"""Asks ChainerMN for each communicator Chainer 7 removed, as 2018 scripts do, and all-reduces with
it: every rank prints what it got, an allreduce of rank+1 and a gradient mean (both the same on
every rank when the communicator works). The shim's warning lines go to stderr."""
import warnings

warnings.simplefilter("ignore")  # Chainer 7 on numpy 1.26 warns on import; the shim writes, not warns

import chainer.links as L  # noqa: E402
import chainermn  # noqa: E402
import numpy as np  # noqa: E402

for name in ("hierarchical", "two_dimensional", "single_node"):
    comm = chainermn.create_communicator(name)
    total = comm.allreduce(np.array([comm.rank + 1.0], dtype=np.float32))
    model = L.Linear(2, 1)
    for param in model.params():
        param.grad = np.full_like(param.array, comm.rank + 1.0)
    comm.multi_node_mean_grad(model)
    print(f"rank {comm.rank}/{comm.size}: {name} -> {type(comm).__name__} "
          f"allreduce={float(total[0]):g} mean_grad={float(model.W.grad[0, 0]):g}", flush=True)
