"""Two-rank ChainerMN job for the AMI stack check: real data-parallel training on CPU.

Each rank trains on its shard of a seeded, linearly separable set; gradients are averaged by
the multi-node optimizer (MPI allreduce), and rank 0 reports the shared model's accuracy.
"""

import sys

import chainer
import chainer.functions as F
import chainer.links as L
import chainermn
import numpy as np


def main():
    comm = chainermn.create_communicator("naive")
    print(f"rank {comm.rank}/{comm.size} up", flush=True)
    if comm.rank == 0:
        rng = np.random.RandomState(0)
        x = rng.randn(800, 8).astype(np.float32)
        y = (x[:, :4].sum(axis=1) > x[:, 4:].sum(axis=1)).astype(np.int32)
        data = chainer.datasets.TupleDataset(x, y)
    else:
        data = None
    data = chainermn.scatter_dataset(data, comm, shuffle=True, seed=0)
    model = L.Classifier(L.Linear(8, 2))
    optimizer = chainermn.create_multi_node_optimizer(chainer.optimizers.Adam(alpha=0.05), comm)
    optimizer.setup(model)
    xs = np.stack([d[0] for d in data])
    ys = np.array([d[1] for d in data], dtype=np.int32)
    for _ in range(30):
        optimizer.update(model, xs, ys)
    # every rank must hold the same weights after averaged updates
    total = comm.allreduce_obj(float(model.predictor.W.array.sum()))
    same = abs(total / comm.size - float(model.predictor.W.array.sum())) < 1e-5
    with chainer.using_config("train", False):
        acc = float(F.accuracy(model.predictor(xs), ys).array)
    accs = comm.gather_obj(acc)
    if comm.rank == 0:
        mean = sum(accs) / len(accs)
        print(f"mn-smoke size={comm.size} accuracy={mean:.3f} weights_in_sync={same}", flush=True)
        sys.exit(0 if mean > 0.9 and same else 1)


if __name__ == "__main__":
    main()
