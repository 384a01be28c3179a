from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.apiserver import SandboxApiServer
from tests.support.harness import Bot, running_bot
from tests.support.waves import wave_clusters


@pytest.fixture
def bot(tmp_path: Path, redis_url: str) -> Iterator[Bot]:
    """The running bot with no policy: everyone may do everything."""
    with running_bot(tmp_path, redis_url) as running:
        yield running


@pytest.fixture
def clusters() -> Iterator[dict[str, SandboxApiServer]]:
    """A wave's two clusters (canary-eu, prod-eu), each with weather at 100/0, nothing logged."""
    with wave_clusters() as servers:
        yield servers
