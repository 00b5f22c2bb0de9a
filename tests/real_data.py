"""The shared real recordings beside the project (../shared/data), for tests that read them."""

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def real_file(relative: str) -> Path:
    """A file of the shared real recordings, or skip the test when it is absent."""
    path = DATA / relative
    if not path.exists():
        pytest.skip(f"real recording {path} is not available")
    return path
