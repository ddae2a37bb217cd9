"""Hypothesis profiles, chosen with HYPOTHESIS_PROFILE:

- ``ci`` (default): few examples per property, so the suite stays fast.
- ``dev``: more examples, for a local run before committing.
- ``thorough``: many examples; run it when a kernel changes
  (``HYPOTHESIS_PROFILE=thorough python -m pytest``).

A session also starts ``python -m tests.warm_kernels`` beside the tests, which
compiles the kernels the tests reach late into Numba's cache on the second
core (see that module); ``NPFACE_TEST_WARMUP=0`` turns it off.
"""
import os
import subprocess
import sys
from pathlib import Path

from hypothesis import HealthCheck, settings

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
settings.register_profile("ci", max_examples=20, **_common)
settings.register_profile("dev", max_examples=100, **_common)
settings.register_profile("thorough", max_examples=1000, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


_WARMUP = []


def pytest_sessionstart(session):
    if os.environ.get("NPFACE_TEST_WARMUP", "1") == "0":
        return
    root = Path(__file__).resolve().parents[1]
    _WARMUP.append(subprocess.Popen([sys.executable, "-m", "tests.warm_kernels"], cwd=root,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))


def pytest_sessionfinish(session, exitstatus):
    for proc in _WARMUP:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
