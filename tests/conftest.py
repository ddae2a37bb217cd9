"""Hypothesis profiles, chosen with HYPOTHESIS_PROFILE:

- ``ci`` (default): few examples per property, so the suite stays fast.
- ``dev``: more examples, for a local run before committing.
- ``thorough``: many examples; run it when a kernel changes
  (``HYPOTHESIS_PROFILE=thorough python -m pytest``).
"""
import os

from hypothesis import HealthCheck, settings

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
settings.register_profile("ci", max_examples=20, **_common)
settings.register_profile("dev", max_examples=100, **_common)
settings.register_profile("thorough", max_examples=1000, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
