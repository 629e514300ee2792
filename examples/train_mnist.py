#!/usr/bin/env python
"""ChainerMN data-parallel MNIST, in the spirit of ChainerMN's own examples/mnist/train_mnist.py.

    mpiexec -n 32 -N 8 python /efs/train_mnist.py -g            # GPUs, pure_nccl
    mpiexec -n 32 -N 8 python /efs/train_mnist.py -g --double-buffering --allreduce-grad-dtype float16
    mpiexec -n 3 -N 1 python train_mnist.py --dataset digits     # CPU, offline

Each epoch's row shows images/s next to the accuracy (images all ranks trained on, per second of
training, evaluation excluded), and the last line one median, to compare runs and instance types.

`--dataset digits` uses scikit-learn's bundled 8x8 digits (1,797 images), so it runs with no
download; `mnist` uses chainer.datasets.get_mnist() (downloaded once, or a seeded cache in
$CHAINER_DATASET_ROOT).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings

warnings.filterwarnings("ignore")  # Chainer 7 on numpy 1.26 warns on import; keep the log readable
# Chainer 7 imports numpy.distutils, which breaks on setuptools' own distutils (>= 74); Python
# 3.11's own distutils works, so take setuptools' import shim out of the way.
os.environ.setdefault("SETUPTOOLS_USE_DISTUTILS", "stdlib")
if "_distutils_hack" in sys.modules and "distutils" not in sys.modules:
    sys.modules["_distutils_hack"].remove_shim()

import chainer  # noqa: E402
import chainer.functions as F  # noqa: E402
import chainer.links as L  # noqa: E402
import chainermn  # noqa: E402
from chainer import training  # noqa: E402
from chainer.training import extensions  # noqa: E402


class MLP(chainer.Chain):
    def __init__(self, n_units: int, n_out: int) -> None:
        super().__init__()
        with self.init_scope():
            self.l1 = L.Linear(None, n_units)
            self.l2 = L.Linear(None, n_units)
            self.l3 = L.Linear(None, n_out)

    def forward(self, x):  # type: ignore[no-untyped-def]
        h1 = F.relu(self.l1(x))
        h2 = F.relu(self.l2(h1))
        return self.l3(h2)


def load_dataset(name: str):  # type: ignore[no-untyped-def]
    if name == "mnist":
        return chainer.datasets.get_mnist()
    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int32)
    data = chainer.datasets.TupleDataset(x, y)
    return chainer.datasets.split_dataset_random(data, 1500, seed=0)


def throughput(trainer: training.Trainer, images_per_iteration: int, device: int) -> list[float]:
    """Report `images/s` each epoch: images all ranks trained on over the epoch's training time
    (also appended to the list returned, for the summary line).

    The clock stops before the evaluator (priority above PRIORITY_WRITER) and starts again after the
    last extension (priority 0), so evaluation and printing are not counted; on a GPU it waits
    for the device first, so queued kernels are.
    """
    clock = {"time": 0.0, "iteration": 0}
    rates: list[float] = []

    def start(trainer: training.Trainer) -> None:
        clock["time"], clock["iteration"] = time.perf_counter(), trainer.updater.iteration

    @training.make_extension(trigger=(1, "epoch"), priority=training.PRIORITY_WRITER + 10, initializer=start)
    def stop(trainer: training.Trainer) -> None:
        if device >= 0:
            chainer.backends.cuda.get_device_from_id(device).synchronize()
        images = (trainer.updater.iteration - clock["iteration"]) * images_per_iteration
        rate = images / max(time.perf_counter() - clock["time"], 1e-9)
        rates.append(rate)
        chainer.reporter.report({"images/s": rate})

    trainer.extend(stop, name="throughput")
    trainer.extend(training.make_extension(trigger=(1, "epoch"), priority=0)(start), name="throughput_restart")
    return rates


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="ChainerMN example: MNIST")
    p.add_argument("--batchsize", "-b", type=int, default=100, help="Number of images in each mini-batch")
    p.add_argument("--communicator", type=str, default=None,
                   help="Type of communicator (default: pure_nccl with -g, naive without)")
    p.add_argument("--epoch", "-e", type=int, default=20, help="Number of sweeps over the dataset to train")
    p.add_argument("--gpu", "-g", action="store_true", help="Use GPU")
    p.add_argument("--out", "-o", default="result", help="Directory to output the result")
    p.add_argument("--resume", "-r", default="", help="Resume the training from snapshot")
    p.add_argument("--unit", "-u", type=int, default=1000, help="Number of units")
    p.add_argument("--double-buffering", action="store_true", help="Use double buffering (pure_nccl only)")
    p.add_argument("--allreduce-grad-dtype", default=None, choices=[None, "float16", "float32", "float64"],
                   help="Allreduce gradients in this dtype (pure_nccl only)")
    p.add_argument("--dataset", choices=["mnist", "digits"], default="mnist",
                   help="mnist (chainer.datasets.get_mnist) or digits (scikit-learn's bundled set, offline)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # lines reach `job submit` live
    args = parse_args(argv)
    communicator = args.communicator or ("pure_nccl" if args.gpu else "naive")
    if (args.double_buffering or args.allreduce_grad_dtype) and communicator != "pure_nccl":
        print("error: --double-buffering and --allreduce-grad-dtype need the pure_nccl communicator (-g)",
              file=sys.stderr)
        return 2
    if args.gpu:
        comm = chainermn.create_communicator(communicator, allreduce_grad_dtype=args.allreduce_grad_dtype)
        device = comm.intra_rank
    else:
        comm = chainermn.create_communicator(communicator)
        device = -1

    if comm.rank == 0:
        print("==========================================")
        print(f"Num process (COMM_WORLD): {comm.size}")
        if args.gpu:
            print("Using GPUs")
        print(f"Using {communicator} communicator")
        print(f"Num unit: {args.unit}")
        print(f"Num Minibatch-size: {args.batchsize}")
        print(f"Num epoch: {args.epoch}")
        print("==========================================")

    model = L.Classifier(MLP(args.unit, 10))
    if device >= 0:
        chainer.cuda.get_device_from_id(device).use()
        model.to_gpu()

    optimizer = chainermn.create_multi_node_optimizer(
        chainer.optimizers.Adam(), comm, double_buffering=args.double_buffering)
    optimizer.setup(model)

    # Rank 0 loads the data and scatters a shard to every rank.
    if comm.rank == 0:
        train, test = load_dataset(args.dataset)
    else:
        train, test = None, None
    train = chainermn.scatter_dataset(train, comm, shuffle=True)
    test = chainermn.scatter_dataset(test, comm, shuffle=True)

    train_iter = chainer.iterators.SerialIterator(train, args.batchsize)
    test_iter = chainer.iterators.SerialIterator(test, args.batchsize, repeat=False, shuffle=False)
    updater = training.StandardUpdater(train_iter, optimizer, device=device)
    trainer = training.Trainer(updater, (args.epoch, "epoch"), out=args.out)

    evaluator = extensions.Evaluator(test_iter, model, device=device)
    trainer.extend(chainermn.create_multi_node_evaluator(evaluator, comm))

    if comm.rank == 0:  # only rank 0 reports, as in the reference
        rates = throughput(trainer, args.batchsize * comm.size, device)
        trainer.extend(extensions.LogReport())
        trainer.extend(extensions.PrintReport(
            ["epoch", "main/loss", "validation/main/loss", "main/accuracy", "validation/main/accuracy",
             "images/s", "elapsed_time"]))
    if args.resume:
        chainer.serializers.load_npz(args.resume, trainer)
    trainer.run()
    if comm.rank == 0 and rates:  # one number to compare runs and instance types by
        steady = rates[1:] or rates  # the first epoch includes warm-up (allocation, NCCL set-up)
        print(f"images/s: {statistics.median(steady):.1f} (median of {len(steady)} epoch(s)"
              f"{', the first left out' if len(rates) > 1 else ''}; {comm.size} ranks)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
