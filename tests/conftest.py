"""Hypothesis profiles: ``ci`` (derandomised, no deadline, failure blobs printed) and ``dev``.

CI selects ``ci`` through the ``CI`` environment variable; ``HYPOTHESIS_PROFILE`` overrides.
"""

import os

from hypothesis import HealthCheck, settings

# The modules under test are tiny: one intra-op thread per test process is fastest, and with
# pytest-xdist's workers sharing the cores, more threads only contend. Set before torch loads.
os.environ.setdefault("OMP_NUM_THREADS", "1")

settings.register_profile(
    "ci",
    max_examples=200,
    deadline=None,
    print_blob=True,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=40, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
