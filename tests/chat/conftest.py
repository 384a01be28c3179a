from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.harness import Bot, running_bot


@pytest.fixture
def bot(tmp_path: Path, redis_url: str) -> Iterator[Bot]:
    """The running bot with no policy: everyone may do everything."""
    with running_bot(tmp_path, redis_url) as running:
        yield running
