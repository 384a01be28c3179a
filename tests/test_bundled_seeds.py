"""The seed documents the product carries for its sandbox are the project's seed fixtures."""

from __future__ import annotations

from pathlib import Path

from bot.sandbox.seeding import bundled_seed_paths

SHARED_SEEDS = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "seeds"


def test_bundled_seeds_equal_the_shared_fixtures() -> None:
    bundled = {p.name: p.read_text() for p in bundled_seed_paths()}
    shared = {p.name: p.read_text() for p in SHARED_SEEDS.glob("*.yaml")}
    assert bundled == shared
