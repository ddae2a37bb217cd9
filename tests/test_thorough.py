"""The thorough Hypothesis profile of every gradient check, as one ``slow`` test.

Not run by default (pyproject's ``-m 'not slow'``); ``python -m pytest -m slow``
runs it. It reruns the property-based gradient-check files in a child pytest
with ``HYPOTHESIS_PROFILE=thorough`` (1,000 examples per property instead of
the ``ci`` profile's 20), so the profile is chosen before Hypothesis loads.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

GRADIENT_CHECKS = ("test_conv.py", "test_linear_relu_pool.py", "test_pair_hinge.py", "test_warp.py",
                   "test_resize.py")


@pytest.mark.slow
def test_every_gradient_check_under_the_thorough_profile():
    here = Path(__file__).parent
    env = dict(os.environ, HYPOTHESIS_PROFILE="thorough")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           *[str(here / name) for name in GRADIENT_CHECKS]],
                          cwd=here.parent, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
