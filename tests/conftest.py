import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# The default profile is derandomized so that CI is reproducible; the thorough one explores with fresh seeds:
# HYPOTHESIS_PROFILE=thorough pytest tests/test_engine_invariants.py tests/test_fast_forward.py
settings.register_profile("default", max_examples=40, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI"):
            pytest.fail("../shared/data must be beside the checkout in CI (real traces and measurements)")
        pytest.skip("../shared/data is not present beside this checkout")
    return SHARED_DATA
