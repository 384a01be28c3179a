"""`canary-bot plan`: stable output on success, one line and exit 2 on any bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bot.cli import main
from sandbox.seeding import bundled_seed_paths
from tests.support.harness import seed_file

WEATHER = str(seed_file("weather"))


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["plan", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_yaml_output_is_the_planned_objects(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, WEATHER, "--vs", "weather", "--weight", "30")
    assert (code, err) == (0, "")
    docs = list(yaml.safe_load_all(out))
    assert [d["kind"] for d in docs] == ["VirtualService"]
    assert [d["weight"] for d in docs[0]["spec"]["http"][0]["route"]] == [70, 30]


def test_output_is_stable_run_to_run(capsys: pytest.CaptureFixture[str]) -> None:
    first = run(capsys, WEATHER, "--vs", "weather", "--weight", "30", "-o", "yaml")
    second = run(capsys, WEATHER, "--vs", "weather", "--weight", "30", "-o", "yaml")
    assert first == second


def test_destination_rule_follows_when_a_subset_is_added(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(
        capsys, str(seed_file("httpbin")), "--vs", "httpbin", "--weight", "10%", "--to", "v2"
    )
    docs = list(yaml.safe_load_all(out))
    assert code == 0
    assert [d["kind"] for d in docs] == ["VirtualService", "DestinationRule"]
    assert docs[1]["spec"]["subsets"][-1] == {"name": "v2", "labels": {"version": "v2"}}


def test_patch_output(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, WEATHER, "--vs", "weather", "--weight", "30", "-o", "patch")
    patches = json.loads(out)
    assert code == 0
    assert [p["kind"] for p in patches] == ["VirtualService"]
    assert {"op": "replace", "path": "/spec/http/0/route/1/weight", "value": 30} in patches[0][
        "patch"
    ]


def test_diff_output(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, WEATHER, "--vs", "weather", "--weight", "30", "-o", "diff")
    assert code == 0
    assert out.startswith("--- VirtualService default/weather (live)\n")
    assert "-      weight: 90\n" in out and "+      weight: 70\n" in out


def test_mirror_only(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, WEATHER, "--vs", "weather", "--mirror", "20")
    route = next(yaml.safe_load_all(out))["spec"]["http"][0]
    assert code == 0 and route["mirrorPercentage"] == {"value": 20.0}


BAD = [
    (["--weight", "-1"], "weight '-1' is not a whole number from 0 to 100"),
    (["--weight", "101"], "weight '101' is over 100"),
    (["--weight", "10.5"], "weight '10.5' is not a whole number"),
    (["--weight", "ten"], "weight 'ten' is not a whole number"),
    (["--weight", "１０"], "not a whole number"),
    (
        ["--weight", "10", "--vs", "climate"],
        "no VirtualService or HTTPRoute 'climate' in namespace 'default'",
    ),
    (["--weight", "10", "--vs", "Weather!"], "vs: 'Weather!' is not a valid name"),
    (["--weight", "10", "--to", "V2"], "to: 'V2' is not a valid name"),
    (["--weight", "10", "--namespace", "prod_1"], "namespace: 'prod_1' is not a valid name"),
    (["--weight", "10", "--to", "v1"], "already carries more traffic (90%) than 'v2' (10%)"),
    (["--weight", "10", "--route", "api"], "no http route named 'api'"),
    ([], "say what to change"),
]


@pytest.mark.parametrize(("extra", "message"), BAD)
def test_bad_input_is_one_line_on_stderr_and_exit_2(
    capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    args = [WEATHER, "--vs", "weather", *extra]
    if extra.count("--vs") == 1:
        args = [WEATHER, *extra]
    code, out, err = run(capsys, *args)
    assert code == 2
    assert out == ""
    assert err.startswith("error: ") and err.count("\n") == 1
    assert message in err


def test_bad_objects_are_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    vs_only = tmp_path / "vs.yaml"
    vs_only.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "VirtualService",
                "metadata": {"name": "weather"},
                "spec": {"hosts": ["w"], "http": [{"route": [{"destination": {"host": "other"}}]}]},
            }
        )
    )
    code, out, err = run(capsys, str(vs_only), "--vs", "weather", "--weight", "10")
    assert (code, out) == (2, "")
    assert "no DestinationRule with subsets has that host" in err
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: VirtualService\nmetadata: {name: weather\n")
    code, out, err = run(capsys, str(broken), "--vs", "weather", "--weight", "10")
    assert (code, out) == (2, "") and "is not valid YAML" in err
    code, out, err = run(capsys, str(tmp_path / "missing.yaml"), "--vs", "w", "--weight", "1")
    assert (code, out) == (2, "") and "cannot read" in err


def test_the_same_virtual_service_twice_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(p) for p in bundled_seed_paths() if p.name.startswith("bookinfo-")]
    code, out, err = run(capsys, *files, "--vs", "reviews", "--weight", "10", "--to", "v3")
    assert (code, out) == (2, "")
    assert "appears 3 times" in err


def test_console_script_is_installed() -> None:
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("canary-bot")),
            "plan",
            WEATHER,
            "--vs",
            "weather",
            "--weight",
            "101",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == "error: weight '101' is over 100; use a whole number from 0 to 100\n"


CHECKOUT_ROUTE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: checkout
  namespace: default
spec:
  parentRefs:
  - name: shop-gateway
  rules:
  - backendRefs:
    - name: checkout-stable
      port: 8080
      weight: 100
    - name: checkout-canary
      port: 8080
      weight: 0
"""


def test_an_httproute_is_planned_when_no_virtual_service_has_the_name(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """As the bot does: a service with no VirtualService of its name is its HTTPRoute."""
    path = tmp_path / "checkout.yaml"
    path.write_text(CHECKOUT_ROUTE, encoding="utf-8")
    code, out, err = run(capsys, str(path), "--vs", "checkout", "--weight", "10")
    assert (code, err) == (0, "")
    [route] = list(yaml.safe_load_all(out))
    assert route["kind"] == "HTTPRoute"
    backends = route["spec"]["rules"][0]["backendRefs"]
    assert [(b["name"], b["weight"]) for b in backends] == [
        ("checkout-stable", 90),
        ("checkout-canary", 10),
    ]
    code, out, _ = run(capsys, str(path), "--vs", "checkout", "--weight", "10", "-o", "patch")
    [patch] = json.loads(out)
    assert code == 0 and patch["kind"] == "HTTPRoute" and patch["name"] == "checkout"


def test_neither_a_virtual_service_nor_an_httproute_of_the_name_is_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, WEATHER, "--vs", "nothing", "--weight", "10")
    assert (code, out) == (2, "")
    expected = "no VirtualService or HTTPRoute 'nothing' in namespace 'default' in the files given"
    assert err == f"error: {expected}\n"


def test_labels_name_the_pods_of_the_subset_a_plan_adds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(
        capsys,
        str(seed_file("httpbin")),
        *("--vs", "httpbin", "--weight", "10", "--to", "v2", "--labels", "version=v2,track=b"),
    )
    docs = list(yaml.safe_load_all(out))
    assert code == 0
    assert docs[1]["spec"]["subsets"][-1] == {
        "name": "v2",
        "labels": {"track": "b", "version": "v2"},
    }


def test_labels_kubernetes_would_refuse_are_one_line_and_nothing_is_printed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(
        capsys,
        str(seed_file("httpbin")),
        "--vs",
        "httpbin",
        "--weight",
        "10",
        "--to",
        "v2",
        "--labels",
        "version",
    )
    assert (code, out) == (2, "")
    assert "--labels: 'version' is not a list of pod labels" in err
