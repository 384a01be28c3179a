"""Istio's own validator for the tests: a real istioctl, built once by scripts/istioctl.sh.

`validate(objects)` runs `istioctl validate -f FILE` and `analyze(objects)` runs
`istioctl analyze --use-kube=false FILE`, each over one multi-document file, since every
istioctl start costs about a second. Their messages are mapped back to the objects they are
about: `validate_each` and `analyze_cases` give one list per object or per case.

The `istioctl` session fixture builds the binary (many minutes the first time on a machine,
instant once cached) and fails loudly when it cannot; CANARY_SKIP_ISTIOCTL=1 skips its tests.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "istioctl.sh"
MODULE = ROOT / "tools" / "istioctl"
BUILD_TIMEOUT = 3600  # seconds: the first build on a loaded 2-core machine
RUN_TIMEOUT = 120  # seconds for one istioctl run over a whole batch
SKIP_VARIABLE = "CANARY_SKIP_ISTIOCTL"

Obj = Mapping[str, Any]


class IstioctlError(RuntimeError):
    """istioctl could not be built, or said something these helpers cannot read."""


def istio_version() -> str:
    """The istio.io/istio version that tools/istioctl/go.mod pins."""
    match = re.search(
        r"^\s*(?:require\s+)?istio\.io/istio\s+(\S+)", (MODULE / "go.mod").read_text(), re.M
    )
    if match is None:
        raise IstioctlError(f"no istio.io/istio version in {MODULE / 'go.mod'}")
    return match.group(1)


def cached_binary() -> Path:
    """Where scripts/istioctl.sh keeps the binary it builds."""
    return ROOT / ".cache" / "istioctl" / istio_version() / "istioctl"


def is_built() -> bool:
    return os.access(cached_binary(), os.X_OK)


@functools.cache
def binary() -> Path:
    """The istioctl binary, built by scripts/istioctl.sh on first use (fails loudly)."""
    try:
        result = subprocess.run(
            [str(SCRIPT)], capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise IstioctlError(f"{SCRIPT} took more than {BUILD_TIMEOUT} s:\n{exc.stderr}") from exc
    if result.returncode != 0:
        raise IstioctlError(
            f"{SCRIPT} failed (exit {result.returncode}); set {SKIP_VARIABLE}=1 to skip the "
            f"istioctl tests on a machine without Go:\n{result.stderr}"
        )
    path = Path(result.stdout.split()[-1])
    if not os.access(path, os.X_OK):
        raise IstioctlError(f"{SCRIPT} printed {path}, which is no executable")
    return path


@pytest.fixture(scope="session")
def istioctl() -> Path:
    """The istioctl binary; building it the first time takes many minutes (see the script)."""
    if os.environ.get(SKIP_VARIABLE) == "1":
        pytest.skip(f"{SKIP_VARIABLE}=1: the istioctl checks are turned off")
    return binary()


def run(args: Sequence[str], *, timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """istioctl ARGS, offline: no kubeconfig is read, nothing is contacted."""
    env = {**os.environ, "KUBECONFIG": os.devnull, "HOME": tempfile.gettempdir()}
    return subprocess.run(
        [str(binary()), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )


def _write(objects: Iterable[Obj], directory: str, name: str) -> Path:
    path = Path(directory) / name
    path.write_text(yaml.safe_dump_all([dict(o) for o in objects], sort_keys=False))
    return path


def _label(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind')}/{meta.get('namespace', '')}/{meta.get('name')}"


# ---- istioctl validate -f ----------------------------------------------------------------

WARNING = "Warning: "


def validate_each(objects: Sequence[Obj]) -> list[list[str]]:
    """`istioctl validate -f` over all objects in one file: the messages about each object.

    Errors are given as istioctl words them (less the Kind/namespace/name prefix); warnings
    start with "Warning: ". An object passes when its list holds no error. To map messages
    back, each object gets a unique name in the file (its name, "--", its index).
    """
    tagged = []
    prefixes = {}
    for index, obj in enumerate(objects):
        doc = copy.deepcopy(dict(obj))
        meta = doc.setdefault("metadata", {})
        meta["name"] = f"{meta.get('name', 'unnamed')}--{index}"
        tagged.append(doc)
        prefixes[f"{_label(doc)}:"] = index
    found: list[list[str]] = [[] for _ in objects]
    if not tagged:
        return found
    with tempfile.TemporaryDirectory(prefix="istioctl-validate-") as tmp:
        path = _write(tagged, tmp, "objects.yaml")
        result = run(["validate", "-f", str(path)])
    output = result.stderr + result.stdout
    unmapped = []
    for level, text in _bullets(output):
        owner = next((p for p in prefixes if text.startswith(p)), None)
        if owner is None:
            unmapped.append(text)
            continue
        message = text[len(owner) :].strip()
        found[prefixes[owner]].append(WARNING + message if level == "warning" else message)
    failed = result.returncode != 0
    if unmapped or (failed and not any(m for ms in found for m in ms if not m.startswith(WARNING))):
        raise IstioctlError(
            f"istioctl validate exited {result.returncode} with messages about no object "
            f"of the file:\n{output}"
        )
    if not failed and any(m for ms in found for m in ms if not m.startswith(WARNING)):
        raise IstioctlError(f"istioctl validate exited 0 yet reported errors:\n{output}")
    return found


def _bullets(output: str) -> list[tuple[str, str]]:
    """(level, text) for each "* ..." item of istioctl's multierror lists."""
    items: list[tuple[str, str]] = []
    level = "error"
    for line in output.splitlines():
        if line.startswith("Error:"):
            level = "error"
        elif "has warnings:" in line:
            level = "warning"
        stripped = line.strip()
        if stripped.startswith("* "):
            items.append((level, stripped[2:]))
        elif stripped and items and line.startswith(("\t\t", "    ")):
            items[-1] = (items[-1][0], items[-1][1] + "\n" + stripped)  # a wrapped message
    return items


def errors_only(messages: Iterable[str]) -> list[str]:
    return [m for m in messages if not m.startswith(WARNING)]


def validate(objects: Sequence[Obj]) -> list[str]:
    """Every message of `istioctl validate -f`, each led by the Kind/namespace/name it is about."""
    return [
        f"{_label(obj)}: {message}"
        for obj, messages in zip(objects, validate_each(objects), strict=True)
        for message in messages
    ]


# ---- istioctl analyze --use-kube=false ---------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One message of `istioctl analyze`."""

    code: str  # IST0101 ...
    level: str  # Error, Warning or Info
    origin: str  # "VirtualService prod/weather"
    message: str

    def __str__(self) -> str:
        return f"{self.level} [{self.code}] ({self.origin}) {self.message}"

    @property
    def kind(self) -> str:
        return self.origin.split(" ", 1)[0]

    @property
    def namespace(self) -> str:
        full = self.origin.split(" ", 1)[-1]
        return full.split("/", 1)[0] if "/" in full else ""


def analyze_findings(objects: Sequence[Obj]) -> list[Finding]:
    """`istioctl analyze --use-kube=false` over `objects` (one file), as Findings."""
    with tempfile.TemporaryDirectory(prefix="istioctl-analyze-") as tmp:
        path = _write(objects, tmp, "objects.yaml")
        # Without --all-namespaces istioctl reports on the namespace "default" only.
        args = ["analyze", "--use-kube=false", "--all-namespaces", "-o", "json", str(path)]
        result = run(args)
    # 0: no Error, or JSON output (which exits 0 with errors too); 79: errors were found.
    if result.returncode not in (0, 79):
        raise IstioctlError(f"istioctl analyze exited {result.returncode}:\n{result.stderr}")
    text = result.stdout.strip()
    if not text:
        raise IstioctlError(f"istioctl analyze printed nothing:\n{result.stderr}")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise IstioctlError(f"istioctl analyze printed no JSON:\n{text}\n{result.stderr}") from exc
    findings = [
        Finding(
            code=str(m.get("code")),
            level=str(m.get("level")),
            origin=str(m.get("origin", "")),
            message=str(m.get("message", "")),
        )
        for m in raw or []
    ]
    if result.returncode == 79 and not any(f.level == "Error" for f in findings):
        raise IstioctlError(f"istioctl analyze exited 79 without an Error:\n{text}")
    return findings


def analyze(objects: Sequence[Obj]) -> list[str]:
    """Every message of `istioctl analyze --use-kube=false`, as "Level [CODE] (origin) text"."""
    return [str(f) for f in analyze_findings(objects)]


def analyze_cases(cases: Sequence[Sequence[Obj]]) -> list[list[Finding]]:
    """One `istioctl analyze` run for many independent cases: the findings of each case.

    Each case moves to namespaces of its own (`c<index>-<namespace>`), and so do the
    `*.<namespace>.svc.cluster.local` hosts and `<namespace>/<gateway>` references in it, so
    that the cases cannot see each other. Hosts that a VirtualService exports to every
    namespace still meet across cases: a conflict (IST0109) is kept only between
    VirtualServices of one case, and its message names only them.
    """
    moved: list[dict[str, Any]] = []
    for index, case in enumerate(cases):
        moved += [_move(obj, index) for obj in case]
    found: list[list[Finding]] = [[] for _ in cases]
    if not moved:
        return found
    for raw in analyze_findings(moved):
        owner = _case_of(raw.namespace)
        if owner is None:
            raise IstioctlError(f"a finding outside every case: {raw}")
        finding = _conflict_within(raw, owner) if raw.code == "IST0109" else raw
        if finding is not None:  # None: a conflict with other cases' VirtualServices only
            found[owner].append(_unmove(finding, owner))
    return found


_CASE_NS = re.compile(r"^c(\d+)-(.+)$")
_CONFLICT = re.compile(r"(The VirtualServices )(\S+)( associated with)")


def _conflict_within(finding: Finding, index: int) -> Finding | None:
    """An IST0109 finding narrowed to the VirtualServices of case `index`; None if only one."""
    match = _CONFLICT.search(finding.message)
    if match is None:
        raise IstioctlError(f"an IST0109 message these helpers cannot read: {finding}")
    names = [n for n in match.group(2).split(",") if _case_of(n.split("/", 1)[0]) == index]
    if len(names) < 2:
        return None
    text = finding.message[: match.start(2)] + ",".join(names) + finding.message[match.end(2) :]
    return Finding(finding.code, finding.level, finding.origin, text)


def _case_of(namespace: str) -> int | None:
    match = _CASE_NS.match(namespace)
    return int(match.group(1)) if match else None


def _move(obj: Obj, index: int) -> dict[str, Any]:
    doc = copy.deepcopy(dict(obj))
    meta = doc.setdefault("metadata", {})
    meta["namespace"] = f"c{index}-{meta.get('namespace') or 'default'}"
    if isinstance(doc.get("spec"), dict):
        _rewrite(doc["spec"], index)
    return doc


def _rewrite(node: Any, index: int) -> None:
    """Move the namespaces named in hosts and gateway references of a spec, in place."""
    if isinstance(node, list):
        for item in node:
            _rewrite(item, index)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key == "host" and isinstance(value, str):
            node[key] = _moved_host(value, index)
        elif key == "hosts" and isinstance(value, list):
            node[key] = [_moved_host(h, index) if isinstance(h, str) else h for h in value]
        elif key == "gateways" and isinstance(value, list):
            node[key] = [_moved_gateway(g, index) if isinstance(g, str) else g for g in value]
        else:
            _rewrite(value, index)


def _moved_host(host: str, index: int) -> str:
    fqdn = re.fullmatch(r"(.+)\.([a-z0-9-]+)\.svc\.cluster\.local", host)
    return f"{fqdn.group(1)}.c{index}-{fqdn.group(2)}.svc.cluster.local" if fqdn else host


def _moved_gateway(gateway: str, index: int) -> str:
    namespace, slash, name = gateway.partition("/")
    return f"c{index}-{namespace}/{name}" if slash else gateway


def _unmove(finding: Finding, index: int) -> Finding:
    prefix = f"c{index}-"
    return Finding(
        code=finding.code,
        level=finding.level,
        origin=finding.origin.replace(" " + prefix, " ", 1),
        message=re.sub(rf"\b{prefix}", "", finding.message),
    )
