"""The helm commands the READMEs print, run as written (as `helm template`, which takes the same
flags and renders what `helm install` would apply), and the chart used as a subchart."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import KUBE_VERSION, ROOT, Chart, Manifest
from tests.support.helm import container, env_of, of_kind, one, pod_spec

READMES = [ROOT / "README.md", ROOT / "helm" / "canary-bot" / "README.md"]


def chart_commands(readme: Path) -> list[str]:
    """Every `helm install|upgrade ... ./helm/canary-bot ...` in `readme`'s sh blocks, with its
    continuation lines joined."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", readme.read_text(), flags=re.S):
        for command in block.replace("\\\n", " ").splitlines():
            if re.match(r"helm (install|upgrade) \S+ \./helm/canary-bot\b", command):
                commands.append(command)
    return commands


COMMANDS = [(readme, command) for readme in READMES for command in chart_commands(readme)]


def as_template(command: str) -> list[str]:
    """`command` as `helm template`: the same release, chart and flags; `--reuse-values` (which
    needs a release to reuse) left out."""
    _helm, _verb, release, chart, *flags = shlex.split(command)
    return ["template", release, chart, *[f for f in flags if f != "--reuse-values"]]


def helm_template(helm: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm), *args, "--kube-version", KUBE_VERSION],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_readmes_show_the_install_commands() -> None:
    readmes = {readme for readme, _ in COMMANDS}
    assert readmes == set(READMES)
    assert any(" install " in command for _, command in COMMANDS)


@pytest.mark.parametrize(
    ("readme", "command"),
    COMMANDS,
    ids=[f"{r.relative_to(ROOT)}:{c.split()[1]}-{i}" for i, (r, c) in enumerate(COMMANDS)],
)
def test_each_readme_command_renders_as_written(helm: Path, readme: Path, command: str) -> None:
    result = helm_template(helm, as_template(command))
    assert result.returncode == 0, f"{readme.name}: {command}\n{result.stderr}"
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    namespace = one(docs, "Deployment")["metadata"].get("namespace", "canary-bot")
    granted = {r["metadata"]["namespace"] for r in of_kind(docs, "Role")} or {namespace}
    default = env_of(docs)["CANARY_DEFAULT_NAMESPACE"]["value"]
    assert default in granted  # the bot's default namespace is one it may act in


def test_listed_namespaces_make_the_first_one_the_default(chart: Chart) -> None:
    docs = render_with(chart, {"rbac": {"namespaces": ["weather", "payments"]}})
    assert env_of(docs)["CANARY_DEFAULT_NAMESPACE"]["value"] == "weather"


def test_an_explicit_default_namespace_outside_the_grant_is_still_refused(chart: Chart) -> None:
    values = {"rbac": {"namespaces": ["weather"]}, "bot": {"defaultNamespace": "billing"}}
    result = chart.run("template", values)
    assert result.returncode != 0
    assert 'namespace "billing" is used by bot.defaultNamespace' in result.stderr


def test_the_chart_accepts_the_global_values_a_parent_chart_passes(chart: Chart) -> None:
    docs = render_with(chart, {"global": {"imageRegistry": "registry.example.com"}})
    assert one(docs, "Deployment")


def test_a_misspelt_top_level_key_is_still_refused(chart: Chart) -> None:
    result = chart.run("template", {"extraVolume": []})
    assert result.returncode != 0
    assert "extraVolume" in result.stderr


def test_extra_env_from_volumes_mounts_and_containers_reach_the_pod(chart: Chart) -> None:
    values = {
        "bot": {
            "extraEnvFrom": [{"secretRef": {"name": "team-env"}}],
            "extraVolumeMounts": [{"name": "certs", "mountPath": "/etc/certs", "readOnly": True}],
        },
        "extraVolumes": [{"name": "certs", "secret": {"secretName": "team-certs"}}],
        "extraContainers": [{"name": "proxy", "image": "registry.example.com/proxy:1"}],
        "podAnnotations": {"example.com/team": "payments"},
    }
    docs = render_with(chart, values)
    spec = pod_spec(docs)
    bot, proxy = spec["containers"]
    assert (bot["name"], proxy["name"]) == ("canary-bot", "proxy")
    assert bot["envFrom"] == [{"secretRef": {"name": "team-env"}}]
    assert {"name": "certs", "mountPath": "/etc/certs", "readOnly": True} in bot["volumeMounts"]
    assert {"name": "certs", "secret": {"secretName": "team-certs"}} in spec["volumes"]
    annotations = one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["example.com/team"] == "payments"


def test_without_extras_the_pod_has_only_the_bot(chart: Chart) -> None:
    docs = render_with(chart, {})
    assert container(docs)["name"] == "canary-bot"
    assert "envFrom" not in container(docs)


def test_an_extra_container_without_an_image_is_refused(chart: Chart) -> None:
    result = chart.run("template", {"extraContainers": [{"name": "proxy"}]})
    assert result.returncode != 0
    assert "image" in result.stderr


def render_with(chart: Chart, values: dict[str, Any]) -> list[Manifest]:
    return [d for d in yaml.safe_load_all(chart.template(values)) if d]
