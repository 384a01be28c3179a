from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

SHARED = Path(__file__).resolve().parents[3] / "shared"
SEEDS = sorted((SHARED / "fixtures" / "seeds").glob("*.yaml"))
NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


def seed_docs(kind: str) -> list[tuple[str, dict[str, Any]]]:
    """(file stem, object) for every object of `kind` in the shared seed fixtures."""
    found = []
    for path in SEEDS:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == kind:
                found.append((path.stem, doc))
    return found


@pytest.fixture(scope="session", autouse=True)
def _seeds_exist() -> None:
    assert SEEDS, f"no seed fixtures found under {SHARED}; ../shared must sit beside the project"
