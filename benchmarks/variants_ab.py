"""Step and asynchronous speed of the bundled lenet-nmnist on the bundled recordings, for A/B runs
of two checkouts (benchmarks/RESULTS.md, "Neuron variants"): run it alternately with
``PYTHONPATH=<other checkout>`` and without, one label each::

    PYTHONPATH=/tmp/base python benchmarks/variants_ab.py before; python benchmarks/variants_ab.py after
"""

import sys
import time

from evsim.datasets.nmnist import read_nmnist
from evsim.runtime.load import load
from evsim.paths import BUNDLED_DATA

net = load("lenet-nmnist")
files = sorted((BUNDLED_DATA / "nmnist").rglob("*.bin"))
raw = [read_nmnist(f) for f in files]
inputs = [net.encode(x) for x in raw]
net.run(inputs[0])
net.run(raw[0], mode="async")
step = asy = float("inf")
for _ in range(3):
    t = time.perf_counter()
    results = [net.run(x) for x in inputs]
    step = min(step, time.perf_counter() - t)
    t = time.perf_counter()
    for x in raw[:6]:
        net.run(x, mode="async")
    asy = min(asy, time.perf_counter() - t)
right = sum(r.prediction == int(f.parent.name) for r, f in zip(results, files))
print(f"{sys.argv[1] if len(sys.argv) > 1 else 'run'}: step {len(inputs) / step:.1f}/s, async {6 / asy:.2f}/s; "
      f"{right} of {len(files)} right, {sum(r.synops for r in results):,} synops", flush=True)
