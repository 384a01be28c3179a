"""No traffic to a canary whose pods are not ready, on the real kube-apiserver and the sandbox:
Pod objects with their status written as a kubelet would (there is none). A staged rollout
whose canary pods disappear mid-rollout has its next step held, with nothing written."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client

from bot.mesh.errors import NoReadyPods
from bot.mesh.kube import KubeMesh
from bot.mesh.request import SplitRequest
from bot.rollout.engine import Engine
from bot.rollout.model import Notify, Phase, Resume, Rollout, StepDue, StepPlan
from bot.rollout.traffic import KubeTraffic
from bot.store.redis_store import RolloutStore, connect
from commands.cohort import OFF, make_cohort
from tests.support.harness import wait_until
from tests.support.kubeapi import RealKube

from .conftest import Cluster

NOW = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


@pytest.fixture(params=[False, True], ids=["listed", "watched"])
def mesh(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[KubeMesh]:
    """The adapter reading pods with a list call per plan, or from its watch (as `serve`)."""
    adapter = KubeMesh(
        cluster.api, clock=lambda: NOW, sleep=lambda _: None, watch_destination_rules=request.param
    )
    yield adapter
    adapter.close()


def relabel(cluster: Cluster, namespace: str, name: str, version: str) -> None:
    """The pod's version label changed through the API (a pod replaced by another version)."""
    body = {"metadata": {"labels": {"app": "weather", "version": version}}}
    client.CoreV1Api(cluster.api).patch_namespaced_pod(
        name, namespace, body, _content_type="application/merge-patch+json"
    )


def weights(cluster: Cluster, namespace: str) -> list[int]:
    routes = cluster.get_vs(namespace, "weather")["spec"]["http"][0]["route"]
    return [r["weight"] for r in routes]


def test_a_canary_whose_pods_are_gone_gets_no_traffic_until_they_are_back(
    cluster: Cluster, mesh: KubeMesh
) -> None:
    namespace = cluster.namespace()
    cluster.seed("weather", namespace)  # v1 at 90, v2 at 10, every pod Ready
    wanted = SplitRequest.build(vs="weather", namespace=namespace, weight=30)
    relabel(cluster, namespace, "weather-v2-0", "v3")  # no pod is v2 any more
    wait_until(lambda: not mesh.ready_pods(namespace, {"version": "v2"}))
    refused = r"subset 'v2' selects no ready pods \(labels version=v2\)"
    with pytest.raises(NoReadyPods, match=refused):
        mesh.apply(wanted)
    assert weights(cluster, namespace) == [90, 10]
    mesh.apply(SplitRequest.build(vs="weather", namespace=namespace, weight=0))  # down: allowed
    assert weights(cluster, namespace) == [100, 0]
    relabel(cluster, namespace, "weather-v2-0", "v2")
    wait_until(lambda: mesh.ready_pods(namespace, {"version": "v2"}) == ["weather-v2-0"])
    mesh.apply(wanted)
    assert weights(cluster, namespace) == [70, 30]


def test_a_pod_that_is_not_ready_does_not_count(real_kube: RealKube) -> None:
    """Readiness as a kubelet reports it, through pods/status (the real server only: the
    sandbox has no status subresource; its pods are as they were put)."""
    namespace = real_kube.new_namespace("ready")
    api = real_kube.api_client()
    cluster = Cluster("real", api, real_kube)
    cluster.seed("weather", namespace)
    status = {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]}
    client.CoreV1Api(api).patch_namespaced_pod_status("weather-v2-0", namespace, {"status": status})
    mesh = KubeMesh(api, clock=lambda: NOW, sleep=lambda _: None)
    try:
        with pytest.raises(NoReadyPods):
            mesh.apply(SplitRequest.build(vs="weather", namespace=namespace, weight=30))
        assert weights(cluster, namespace) == [90, 10]
    finally:
        mesh.close()
        api.close()


# ---- a staged rollout whose canary disappears ----------------------------------------------

STEPS = StepPlan(weights=(10, 20, 30, 40, 100), interval_s=30)
READY = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}


class Notes:
    """The notifier: what the engine told the channel."""

    def __init__(self) -> None:
        self.told: list[Notify] = []

    def notify(self, rollout: Rollout, message: Notify) -> None:
        self.told.append(message)


def written(cluster: Cluster, namespace: str) -> tuple[str, str]:
    """The resourceVersions of the weather VirtualService and DestinationRule: any write moves
    them (a fence or an annotation as much as a weight)."""
    dr = cluster.objects.get_namespaced_custom_object(
        "networking.istio.io", "v1", namespace, "destinationrules", "weather-service"
    )
    vs = cluster.get_vs(namespace, "weather")
    return vs["metadata"]["resourceVersion"], dr["metadata"]["resourceVersion"]


def put_back(cluster: Cluster, namespace: str, pod: dict[str, Any]) -> None:
    """A pod like `pod` again, Ready (its status written as a kubelet would, on the real
    server)."""
    core = client.CoreV1Api(cluster.api)
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": pod["metadata"]["name"], "labels": pod["metadata"]["labels"]},
        "spec": pod["spec"],
        "status": READY,
    }
    core.create_namespaced_pod(namespace, body)
    if cluster.kind == "real":
        core.patch_namespaced_pod_status(pod["metadata"]["name"], namespace, {"status": READY})


def test_a_step_is_held_when_the_canarys_pods_disappear_mid_rollout(
    cluster: Cluster, mesh: KubeMesh, redis_url: str
) -> None:
    namespace = cluster.namespace()
    cluster.seed("weather", namespace)  # v1 at 90, v2 at 10, every pod Ready
    now = [NOW]
    notes = Notes()
    store = RolloutStore(connect(redis_url))
    engine = Engine(store=store, traffic=KubeTraffic(mesh), notifier=notes, clock=lambda: now[0])
    rollout = engine.start(
        namespace=namespace, vs="weather", to=None, steps=STEPS, actor="U1", channel="C1"
    )
    assert (rollout.phase, rollout.weight) == (Phase.PROGRESSING, 10)  # 10% was live already

    core = client.CoreV1Api(cluster.api)
    canary = core.list_namespaced_pod(namespace, label_selector="version=v2").items
    assert [p.metadata.name for p in canary] == ["weather-v2-0"]
    gone = [cluster.api.sanitize_for_serialization(p) for p in canary]
    for pod in gone:  # unscheduled, so deleted at once (its answer is a Status, not a Pod)
        name = pod["metadata"]["name"]
        core.delete_namespaced_pod(name, namespace, grace_period_seconds=0, _preload_content=False)
    assert core.list_namespaced_pod(namespace, label_selector="version=v2").items == []
    wait_until(lambda: not mesh.ready_pods(namespace, {"version": "v2"}))
    before = written(cluster, namespace)

    now[0] += timedelta(seconds=STEPS.interval_s)
    held = engine.handle(rollout.id, StepDue(step=0))
    assert (held.phase, held.weight) == (Phase.PAUSED, 10)
    assert f"subset 'v2' selects no ready pods (labels version=v2) in namespace '{namespace}'" in (
        held.reason
    )
    assert (store.load(rollout.id).phase, store.load(rollout.id).weight) == (Phase.PAUSED, 10)
    assert written(cluster, namespace) == before  # nothing was written, not even a fence
    assert weights(cluster, namespace) == [90, 10]
    assert any("selects no ready pods" in n.text for n in notes.told), notes.told

    for pod in gone:  # the canary is back: resuming takes the held step
        put_back(cluster, namespace, pod)
    wait_until(lambda: mesh.ready_pods(namespace, {"version": "v2"}) == ["weather-v2-0"])
    engine.handle(rollout.id, Resume(actor="U1"))
    engine.handle(rollout.id, StepDue(step=0))
    assert store.load(rollout.id).weight == 20 and weights(cluster, namespace) == [80, 20]


def test_a_cohort_is_not_routed_to_a_canary_whose_pods_are_gone(
    cluster: Cluster, mesh: KubeMesh
) -> None:
    """A cohort's route sends its requests to the canary whatever the weights: with no ready pod
    behind the canary it is refused and nothing is written; taking it off needs no pod."""
    namespace = cluster.namespace()
    cluster.seed("weather", namespace)  # v1 at 90, v2 at 10, every pod Ready
    relabel(cluster, namespace, "weather-v2-0", "v3")  # no pod is v2 any more
    wait_until(lambda: not mesh.ready_pods(namespace, {"version": "v2"}))
    beta = make_cohort("header", "x-beta", "1")
    cohort = SplitRequest.build(vs="weather", namespace=namespace, weight=0, cohort=beta)
    before = cluster.get_vs(namespace, "weather")["metadata"]["resourceVersion"]
    with pytest.raises(NoReadyPods, match=r"subset 'v2' selects no ready pods"):
        mesh.apply(cohort)
    assert cluster.get_vs(namespace, "weather")["metadata"]["resourceVersion"] == before
    relabel(cluster, namespace, "weather-v2-0", "v2")
    wait_until(lambda: mesh.ready_pods(namespace, {"version": "v2"}) == ["weather-v2-0"])
    mesh.apply(cohort)
    assert cluster.get_vs(namespace, "weather")["spec"]["http"][0]["match"] == [
        {"headers": {"x-beta": {"exact": "1"}}}
    ]
    relabel(cluster, namespace, "weather-v2-0", "v3")
    wait_until(lambda: not mesh.ready_pods(namespace, {"version": "v2"}))
    mesh.apply(SplitRequest.build(vs="weather", namespace=namespace, weight=0, cohort=OFF))
    assert "x-beta" not in str(cluster.get_vs(namespace, "weather")["spec"]["http"])
