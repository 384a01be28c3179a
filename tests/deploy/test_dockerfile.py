"""The Dockerfile, checked statically (no Docker engine here), and the wheel it installs, built
from exactly the files the Dockerfile copies."""

from __future__ import annotations

import email
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import CHART, ROOT

PYPROJECT: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT: dict[str, Any] = PYPROJECT["project"]
VENV_BIN = Path(sys.executable).parent
COMPILERS = re.compile(r"\b(gcc|g\+\+|clang|cc|c\+\+|make|cmake|build-essential|\S+-dev)\b")
SECRET_NAMES = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|PRIVATE", re.IGNORECASE)
PINNED_PYTHON = re.compile(r"^python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?$")


@dataclass(frozen=True)
class Instruction:
    stage: int
    keyword: str
    args: str


def parse_dockerfile(text: str) -> list[Instruction]:
    """Logical instructions (continuations joined, comments dropped), each with its stage."""
    logical, pending = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
        elif pending.strip():
            logical.append(pending.strip())
            pending = ""
    instructions, stage = [], -1
    for line in logical:
        keyword, _, args = line.partition(" ")
        stage += keyword.upper() == "FROM"
        instructions.append(Instruction(stage, keyword.upper(), args.strip()))
    return instructions


DOCKERFILE = parse_dockerfile((ROOT / "Dockerfile").read_text(encoding="utf-8"))
FINAL = max(i.stage for i in DOCKERFILE)


def instructions(keyword: str, stage: int | None = None) -> list[str]:
    return [i.args for i in DOCKERFILE if i.keyword == keyword and stage in (None, i.stage)]


def assignments(args: str) -> dict[str, str]:
    """`KEY=value KEY2="v 2"` (ENV, ARG, LABEL) as a dict; a bare `ARG NAME` has value ''."""
    pairs = (word.partition("=") for word in shlex.split(args))
    return {key: value for key, _, value in pairs}


def json_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), f"use the exec (JSON) form: {args}"
    return [str(v) for v in value]


# --- base images and stages -------------------------------------------------------------------


def test_every_base_image_is_pinned_by_exact_version() -> None:
    images = [args.split()[0] for args in instructions("FROM")]
    for image in images:
        assert ":" in image and not image.endswith(":latest"), image
        assert PINNED_PYTHON.match(image), f"{image}: pin python:3.11.X-slim-bookworm"


def test_builder_and_final_stage_share_one_base() -> None:
    bases = {args.split()[0] for args in instructions("FROM")}
    assert len(bases) == 1, bases


def test_base_python_satisfies_requires_python() -> None:
    image = instructions("FROM")[-1].split()[0]
    version = re.search(r"python:(\d+)\.(\d+)", image)
    assert version is not None
    assert PROJECT["requires-python"] == ">=3.11"
    assert (int(version[1]), int(version[2])) >= (3, 11)


def test_is_multi_stage_with_the_wheel_built_in_the_builder() -> None:
    froms = instructions("FROM")
    assert len(froms) >= 2
    assert froms[0].split()[-2:] == ["AS", "builder"]
    assert any("pip wheel --no-deps" in run for run in instructions("RUN", 0))
    assert any("from=builder" in run for run in instructions("RUN", FINAL))


def test_builder_copies_every_package_the_wheel_is_made_of() -> None:
    copied = {src for args in instructions("COPY", 0) for src in args.split()[:-1]}
    found = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*") for pattern in found}
    assert packages | {"pyproject.toml", "README.md"} <= copied
    assert "sandbox" not in copied
    assert PROJECT["readme"] in copied


# --- the final stage --------------------------------------------------------------------------


def test_final_stage_runs_as_a_fixed_non_root_uid_matching_the_chart() -> None:
    user = instructions("USER", FINAL)[-1]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0, f"USER {user}: use a numeric, non-root UID"
    assert gid == "" or (gid.isdigit() and int(gid) != 0)
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert int(uid) == values["securityContext"]["runAsUser"] == 10001
    assert any(f"--uid {uid}" in run for run in instructions("RUN", FINAL))


def test_no_secrets_in_env_or_build_args() -> None:
    for keyword in ("ENV", "ARG"):
        for args in instructions(keyword):
            for name in assignments(args):
                assert not SECRET_NAMES.search(name), f"{keyword} {name}: pass secrets at run time"


def test_no_compilers_in_the_final_stage() -> None:
    runs = instructions("RUN", FINAL)
    for run in runs:
        assert not COMPILERS.search(run), run
    install = next(run for run in runs if "pip install" in run)
    assert "--no-cache-dir" in install
    assert "--only-binary=:all:" in install  # so nothing could be compiled even by accident


def test_entrypoint_is_the_console_script_and_cmd_is_serve() -> None:
    (entrypoint,) = instructions("ENTRYPOINT", FINAL)
    assert json_form(entrypoint) == ["canary-bot"]
    assert "canary-bot" in PROJECT["scripts"]
    (cmd,) = instructions("CMD", FINAL)
    assert json_form(cmd) == ["serve"]


def test_serve_is_a_real_subcommand() -> None:
    result = subprocess.run(
        [str(VENV_BIN / "canary-bot"), "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_healthcheck_asks_the_readiness_endpoint_with_python() -> None:
    (healthcheck,) = instructions("HEALTHCHECK", FINAL)
    command = json_form(healthcheck[healthcheck.index("CMD ") + 4 :])
    assert command[0] == "python"
    assert "/readyz" in command[-1]
    compile(command[-1], "HEALTHCHECK", "exec")  # the one-liner is valid Python


def test_runtime_environment_and_port_match_the_chart() -> None:
    env: dict[str, str] = {}
    for args in instructions("ENV", FINAL):
        env |= assignments(args)
    assert env["MPLCONFIGDIR"] == "/tmp"
    assert env["PYTHONUNBUFFERED"] == "1"
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert instructions("EXPOSE", FINAL) == [str(values["containerPort"])] == ["3000"]
    assert env["CANARY_HTTP_PORT"] == "3000"


def test_oci_labels_describe_the_image() -> None:
    labels: dict[str, str] = {}
    for label in instructions("LABEL", FINAL):
        labels |= assignments(label)
    args: dict[str, str] = {}
    for arg in instructions("ARG", FINAL):
        args |= assignments(arg)
    oci = {k.removeprefix("org.opencontainers.image."): v for k, v in labels.items()}
    assert {"title", "source", "licenses", "description", "version"} <= oci.keys()
    assert oci["title"] == PROJECT["name"]
    assert oci["licenses"] == PROJECT["license"]
    assert oci["version"] == "${VERSION}" and args["VERSION"] == PROJECT["version"]
    assert oci["source"] == "${SOURCE_URL}" and args["SOURCE_URL"].startswith("https://")


# --- .dockerignore ----------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def dockerignored(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = _pattern_regex(pattern.removeprefix("!").strip("/"))
        if any(regex.match(prefix) for prefix in prefixes):
            ignored = not negated
    return ignored


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".git/HEAD",
        "tests/deploy/test_helm.py",
        ".cache/helm/helm",
        ".env",
        ".mypy_cache/3.11/bot/cli.data.json",
        ".pytest_cache/v/cache/lastfailed",
        ".hypothesis/examples/x",
        "bot/__pycache__/cli.cpython-311.pyc",
        "bot/mesh/__pycache__/kube.cpython-311.pyc",
        "canary_bot.egg-info/PKG-INFO",
        "build/lib/bot/cli.py",
    ],
)
def test_dockerignore_keeps_out(path: str) -> None:
    assert dockerignored(path)


def copied_sources() -> Iterator[str]:
    for args in instructions("COPY", 0):
        yield from (src for src in args.split()[:-1] if not src.startswith("--"))


def test_dockerignore_keeps_in_everything_the_dockerfile_copies() -> None:
    for source in copied_sources():
        path = ROOT / source
        assert path.exists(), source
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for file in files:
            relative = file.relative_to(ROOT).as_posix()
            if "__pycache__" not in relative:
                assert not dockerignored(relative), relative


# --- the wheel the image installs -------------------------------------------------------------


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip wheel --no-deps .` in a build context made of what the Dockerfile copies, as the
    builder stage does: proof that those files are all the wheel needs."""
    context = tmp_path_factory.mktemp("docker-context")
    for source in copied_sources():
        if (ROOT / source).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(ROOT / source, context / source, ignore=ignore)
        else:
            shutil.copy2(ROOT / source, context / source)
    out = tmp_path_factory.mktemp("wheels")
    result = subprocess.run(
        [str(VENV_BIN / "pip"), "wheel", "--no-deps", "--quiet", "-w", str(out), "."],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (built,) = out.glob("*.whl")
    return built


def test_a_wheel_of_the_whole_source_tree_holds_the_product_only(tmp_path: Path) -> None:
    """`pip wheel .` beside the sandbox and the tests (a clone, not the Docker context): the
    sandbox's API server, traffic simulator and demo stay out of the product's package."""
    context = tmp_path / "clone"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for source in ("bot", "commands", "policies", "sandbox", "tests", "bench"):
        shutil.copytree(ROOT / source, context / source, ignore=ignore)
    for source in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / source, context / source)
    result = subprocess.run(
        [str(VENV_BIN / "pip"), "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), "."],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (built,) = tmp_path.glob("*.whl")
    with zipfile.ZipFile(built) as archive:
        tops = {member.split("/")[0] for member in archive.namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"bot", "commands", "policies"}


def dist_info(wheel: Path, name: str) -> str:
    with zipfile.ZipFile(wheel) as archive:
        (member,) = [m for m in archive.namelist() if m.endswith(f".dist-info/{name}")]
        return archive.read(member).decode()


def test_wheel_metadata_matches_pyproject(wheel: Path) -> None:
    metadata: Message = email.message_from_string(dist_info(wheel, "METADATA"))
    assert metadata["Name"] == PROJECT["name"] == "canary-bot"
    assert metadata["Version"] == PROJECT["version"]
    assert metadata["Requires-Python"] == PROJECT["requires-python"]
    required = {re.split(r"[<>=;\[ ]", r)[0] for r in metadata.get_all("Requires-Dist") or []}
    declared = {re.split(r"[<>=;\[ ]", d)[0] for d in PROJECT["dependencies"]}
    assert declared <= required
    assert wheel.name.endswith("-py3-none-any.whl")


def test_wheel_declares_the_console_script(wheel: Path) -> None:
    entry_points = dist_info(wheel, "entry_points.txt")
    section = entry_points.split("[console_scripts]")[1].split("[")[0]
    scripts = dict(line.replace(" ", "").split("=", 1) for line in section.split("\n") if line)
    assert scripts == {"canary-bot": "bot.cli:main"} == PROJECT["scripts"]


def test_wheel_carries_the_package_data(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        members = set(archive.namelist())
    shipped = {p.split("/")[0] for p in copied_sources()}
    for package, globs in PYPROJECT["tool"]["setuptools"]["package-data"].items():
        if package.split(".")[0] not in shipped:
            continue  # the sandbox: the image carries the product only
        directory = ROOT / package.replace(".", "/")
        for glob in globs:
            sources = [p.relative_to(ROOT).as_posix() for p in directory.glob(glob)]
            assert set(sources) <= members, f"{package}: {glob}"
    assert any(fnmatch(m, "bot/mesh/crds/*.json") for m in members)
    assert not any(m.startswith("sandbox/") for m in members)  # the product only
    assert any(fnmatch(m, "policies/*.yaml") for m in members)
    assert not any("__pycache__" in m or m.startswith("tests/") for m in members)


def test_wheel_runs_its_own_entry_point(wheel: Path, tmp_path: Path) -> None:
    """The wheel's code (zip-imported, deps from this venv) starts and answers --help."""
    script = (
        "import sys, bot\n"
        f"assert bot.__file__.startswith({str(wheel)!r}), bot.__file__\n"
        "from bot.cli import main\n"
        "sys.exit(main(['--help']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,  # not the repository, whose bot/ would shadow the wheel's
        env={"PYTHONPATH": str(wheel), "PATH": str(VENV_BIN)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "serve" in result.stdout


def test_installed_console_script_runs() -> None:
    result = subprocess.run(
        [str(VENV_BIN / "canary-bot"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: canary-bot")
