"""The seed files and Istio CRD schemas the product carries are copies of the workplace's own
(`../shared`, beside the project): they must not drift from them."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest
import yaml

from sandbox.seeding import bundled_seed_paths

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"no {SHARED} to compare the bundled copies with (a plain clone)"
)
def test_the_bundled_copies_equal_the_workplace_originals() -> None:
    bundled = {p.name: p.read_text() for p in bundled_seed_paths()}
    originals = {p.name: p.read_text() for p in (SHARED / "fixtures" / "seeds").glob("*.yaml")}
    assert bundled == originals
    for stem in ("virtualservice", "destinationrule"):
        crd = yaml.load((SHARED / "istio" / f"{stem}.crd.yaml").read_text(), yaml.CSafeLoader)
        schema = resources.files("bot.mesh").joinpath(f"crds/{stem}.json").read_text()
        assert json.loads(schema)["versions"] == {
            v["name"]: v["schema"]["openAPIV3Schema"] for v in crd["spec"]["versions"]
        }
