import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI"):
            pytest.fail("../shared/data must be beside the checkout in CI (real traces and measurements)")
        pytest.skip("../shared/data is not present beside this checkout")
    return SHARED_DATA
