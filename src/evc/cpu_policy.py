"""How evc's processes share a CPU: compute threads that sleep when they wait, instead of spinning.

torch's CPU kernels run on an OpenMP thread pool (GNU libgomp in the PyPI wheels). At the end of each
parallel region a thread that finished early waits for the others; by default libgomp spins for about
300,000 iterations before it sleeps. On a machine whose cores are busy with other work, the thread it
waits for is often descheduled, and the spinning takes the very core time that thread needs: a training
step or an `evc encode` then slows far more than its share (issue 19: 3.6 s alone, 15.7-36.6 s next to two
busy processes). ``OMP_WAIT_POLICY=PASSIVE`` makes waiting threads sleep at once.

libgomp reads its environment when it is loaded, i.e. when torch is first imported, so
:func:`configure_openmp` runs at the top of ``evc/__init__.py``, before any torch import. A program that
imports torch before evc keeps the policy it started with. An explicit ``OMP_WAIT_POLICY`` or
``GOMP_SPINCOUNT`` in the environment is left as it is (``OMP_WAIT_POLICY=ACTIVE`` brings the spinning
back, e.g. on a machine reserved for one job). Measured by ``benchmarks/train_share.py``
(docs/training.md, "Sharing the CPU").
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

WAIT_POLICY = "PASSIVE"


def configure_openmp(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` in ``environ`` unless the wait policy or the spin count is already
    set there; returns whether it was set. Effective only before torch (its OpenMP runtime) is loaded;
    subprocesses inherit it."""
    if "OMP_WAIT_POLICY" in environ or "GOMP_SPINCOUNT" in environ:
        return False
    environ["OMP_WAIT_POLICY"] = WAIT_POLICY
    return True
