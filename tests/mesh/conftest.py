from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import yaml

from sandbox.seeding import FAST_LOADER, bundled_seed_paths

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


def seed_docs(kind: str) -> list[tuple[str, dict[str, Any]]]:
    """(file stem, object) for every object of `kind` in the bundled seed files."""
    found = []
    for path in bundled_seed_paths():
        for doc in yaml.load_all(path.read_text(), FAST_LOADER):
            if doc and doc.get("kind") == kind:
                found.append((path.stem, doc))
    assert found, f"no {kind} in the bundled seeds"
    return found
