"""The real control plane (tests/support/kubeapi.py), and one `cluster` fixture that is either it
or the sandbox API server, for the contract tests that must hold on both."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client

from sandbox.apiserver import SandboxApiServer
from sandbox.kubeconfig import SANDBOX_TOKEN, SANDBOX_USER, api_client_for
from sandbox.seeding import load_yaml_documents
from tests.support.harness import seed_file
from tests.support.kubeapi import VIEWER, RealKube, pytest_collection_finish, real_kube

__all__ = ["pytest_collection_finish", "real_kube"]

GROUP = "networking.istio.io"
PLURALS = {"VirtualService": "virtualservices", "DestinationRule": "destinationrules"}
# Small, so that a test can push a watch's starting point out of the sandbox's history.
SANDBOX_HISTORY = 20
# Nobody may act in this sandbox namespace (on the real server a fresh namespace does, where the
# viewer has no grant); elsewhere the sandbox's RBAC decides for the viewer by its Roles.
SANDBOX_FORBIDDEN = "locked"


@dataclass
class Cluster:
    """An API server seen only through the official client, as the bot sees it."""

    kind: str  # "real" or "sandbox"
    api: client.ApiClient
    real: RealKube | None = None
    sandbox: SandboxApiServer | None = None

    @property
    def objects(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    def namespace(self) -> str:
        """A fresh namespace, made on either server."""
        if self.real is not None:
            return self.real.new_namespace("t")
        name = f"t-{uuid.uuid4().hex[:8]}"
        assert self.sandbox is not None
        self.sandbox.add_namespace(name)
        return name

    def forbidden_namespace(self) -> str:
        """A namespace where the viewer (VIEWER.token) may do nothing."""
        return self.namespace() if self.real is not None else SANDBOX_FORBIDDEN

    def client_for(self, token: str) -> client.ApiClient:
        """A new ApiClient that sends `token`; the caller closes it."""
        if self.real is not None:
            return self.real.api_client(token)
        assert self.sandbox is not None
        configuration = client.Configuration(host=self.sandbox.url)
        configuration.proxy = None
        configuration.api_key = {"BearerToken": token}
        configuration.api_key_prefix = {"BearerToken": "Bearer"}
        return client.ApiClient(configuration)

    def seed(self, stem: str, namespace: str) -> list[dict[str, Any]]:
        """Create the Istio objects of a bundled seed file in `namespace`, each through the API
        at the version its file names, and each Deployment's Pods, Ready (no kubelet makes
        them); the Istio objects as created."""
        created = []
        for doc in load_yaml_documents([seed_file(stem)]):
            if doc.get("kind") == "Deployment":
                self._ready_pods(doc, namespace)
                continue
            if doc.get("kind") not in PLURALS:
                continue
            body = copy.deepcopy(doc)
            body["metadata"]["namespace"] = namespace
            version = body["apiVersion"].split("/")[1]
            created.append(
                self.objects.create_namespaced_custom_object(
                    GROUP, version, namespace, PLURALS[body["kind"]], body
                )
            )
        return created

    def add_service(self, namespace: str, docs: list[dict[str, Any]]) -> None:
        """Create a Service and its Deployment's Pods (`tests.support.services`) through the
        API: the Pods Ready, as in `seed`."""
        for doc in docs:
            if doc["kind"] == "Deployment":
                self._ready_pods(doc, namespace)
            else:
                client.CoreV1Api(self.api).create_namespaced_service(namespace, doc)

    def _ready_pods(self, deployment: dict[str, Any], namespace: str) -> None:
        """The Pods `deployment` would run, Running and Ready: on the real server created, then
        their status written (as a kubelet would) through pods/status; the sandbox takes the
        status with the Pod, or serves no Pods at all."""
        core = client.CoreV1Api(self.api)
        template = deployment["spec"]["template"]
        status = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
        for index in range(int(deployment["spec"].get("replicas", 1))):
            name = f"{deployment['metadata']['name']}-{index}"
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "labels": template["metadata"]["labels"]},
                "spec": template["spec"],
                "status": status,
            }
            try:
                core.create_namespaced_pod(namespace, pod)
            except client.ApiException as e:
                if self.kind == "sandbox" and e.status == 404:
                    return  # a sandbox without Pods
                raise
            if self.kind == "real":
                core.patch_namespaced_pod_status(name, namespace, {"status": status})

    def get_vs(self, namespace: str, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.objects.get_namespaced_custom_object(
            GROUP, "v1", namespace, "virtualservices", name
        )
        return found


@pytest.fixture(params=["sandbox", "real"])
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """The same contract, on the sandbox API server and on a real kube-apiserver."""
    if request.param == "real":
        kube: RealKube = request.getfixturevalue("real_kube")
        api = kube.api_client()
        yield Cluster("real", api, kube)
        api.close()
        return
    with SandboxApiServer(
        history_limit=SANDBOX_HISTORY,
        tokens={SANDBOX_TOKEN: SANDBOX_USER, VIEWER.token: VIEWER.name},
        namespaces=(),
        forbidden_namespaces=(SANDBOX_FORBIDDEN,),
        admins=(SANDBOX_USER,),
    ) as server:
        api = api_client_for(server.url)
        yield Cluster("sandbox", api, sandbox=server)
        api.close()
