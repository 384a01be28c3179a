"""A real Kubernetes control plane for the tests: etcd and kube-apiserver, built from Go modules
by scripts/kube-binaries.sh (tools/kube), on free loopback ports, with Istio's CRDs installed.

    with RealKube(users=[User("viewer", "viewer-token")]) as kube:
        api = kube.api_client()                      # the admin, in group system:masters
        path = kube.kubeconfig_for("viewer-token")   # a kubeconfig for any bearer token
        ns = kube.new_namespace("vs")                # a fresh namespace for one test

What it is: HTTPS with a serving certificate from a CA made for this run (openssl), bearer
tokens from a static token file (the admin, plus the `users` given before start: the file is
read once, at start), `--authorization-mode=RBAC`, ServiceAccount token signing keys (so the
TokenRequest API works: `service_account_token`). No controller-manager, scheduler or kubelet:
nothing makes a namespace's `default` ServiceAccount, so the ServiceAccount admission plugin is
off (with it on, every pod create is refused for lack of that ServiceAccount); a deleted
namespace stays Terminating for ever (no namespace controller); nothing garbage-collects.
Everything the processes write (logs, data, keys) is in one temp dir, removed on close; a
start that fails shows the end of each log.

The pytest side: `real_kube` is a session-scoped fixture; a test folder gets it with
`from tests.support.kubeapi import real_kube, pytest_collection_finish` in its conftest.py (the
hook builds the binaries, if needed, before any test's timeout starts). When they cannot be
built or started the tests fail; `CANARY_SKIP_REAL_KUBE=1` skips them instead, saying why.
"""

from __future__ import annotations

import atexit
import contextlib
import csv
import io
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pytest
import yaml
from kubernetes import client

from sandbox.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "scripts" / "kube-binaries.sh"
CRD_DIR = Path(__file__).resolve().parent / "crds"
SKIP_ENV = "CANARY_SKIP_REAL_KUBE"
ADMIN_TOKEN = "canary-admin-token"
ISSUER = "https://kubernetes.default.svc.cluster.local"
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0
_LOG_TAIL_CHARS = 3_000


class RealKubeError(RuntimeError):
    """The binaries could not be built, or the control plane did not come up."""


@dataclass(frozen=True)
class User:
    """A static-token user: `kubeconfig_for(token)` acts as `name` in `groups`."""

    name: str
    token: str
    groups: tuple[str, ...] = ()


ADMIN = User("canary-admin", ADMIN_TOKEN, ("system:masters",))
# The session fixture's users besides the admin: no RBAC grants them anything until a test does.
VIEWER = User("viewer", "canary-viewer-token")


# --- The binaries -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Binaries:
    kube_apiserver: Path
    etcd: Path


def build_binaries(timeout_s: float = 3600.0) -> Binaries:
    """Run scripts/kube-binaries.sh (quick once built) and return the paths it prints."""
    try:
        done = subprocess.run(
            ["bash", str(BUILD_SCRIPT)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RealKubeError(f"{BUILD_SCRIPT} did not finish: {e}") from e
    if done.returncode != 0:
        raise RealKubeError(
            f"{BUILD_SCRIPT} failed with exit code {done.returncode}; it printed:\n"
            f"{done.stdout[-_LOG_TAIL_CHARS:]}{done.stderr[-_LOG_TAIL_CHARS:]}"
        )
    paths = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    try:
        binaries = Binaries(Path(paths["kube-apiserver"]), Path(paths["etcd"]))
    except KeyError as e:
        raise RealKubeError(f"{BUILD_SCRIPT} printed no path for {e}:\n{done.stdout}") from e
    for path in (binaries.kube_apiserver, binaries.etcd):
        if not os.access(path, os.X_OK):
            raise RealKubeError(f"{BUILD_SCRIPT} printed {path}, which is not an executable")
    return binaries


# --- Keys and certificates (openssl; the venv has no `cryptography`) ---------------------------


def _openssl(*args: str, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RealKubeError("no openssl on PATH: it makes the test cluster's certificates")
    done = subprocess.run([openssl, *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RealKubeError(f"openssl {' '.join(args)} failed: {done.stderr.strip()}")


def make_pki(folder: Path) -> None:
    """ca.crt, server.crt/key for 127.0.0.1 and localhost, and sa.key/pub for ServiceAccount
    tokens, all P-256 and valid for two days."""
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=canary-bot test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=folder,
    )  # fmt: skip
    _openssl(
        "req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=kube-apiserver",
        cwd=folder,
    )  # fmt: skip
    (folder / "server.ext").write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
    )
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "server.ext",
        cwd=folder,
    )  # fmt: skip
    _openssl(
        "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "sa.key",
        cwd=folder,
    )  # fmt: skip
    _openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=folder)


def token_file(users: Iterable[User]) -> str:
    """The --token-auth-file format: token,user,uid,"group1,group2"."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for user in users:
        row = [user.token, user.name, user.name]
        writer.writerow([*row, ",".join(user.groups)] if user.groups else row)
    return out.getvalue()


# --- The control plane -------------------------------------------------------------------------


class _Child:
    """One child process with its output in a log file."""

    def __init__(self, name: str, argv: list[str], log: Path) -> None:
        self.name, self.log = name, log
        with log.open("ab") as output:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT
            )

    def exited(self) -> int | None:
        return self.process.poll()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it is still there after STOP_TIMEOUT_S."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def tail(self) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.log.name} (last {_LOG_TAIL_CHARS} chars) ---\n" + text[-_LOG_TAIL_CHARS:]


class RealKube:
    """etcd + kube-apiserver on loopback, Istio's CRDs installed. `start()` returns self."""

    def __init__(
        self,
        *,
        users: Iterable[User] = (),
        namespaces: Iterable[str] = (),
        binaries: Binaries | None = None,
        extra_args: Iterable[str] = (),
    ) -> None:
        self.users = (ADMIN, *users)
        self._namespaces = tuple(namespaces)
        self._binaries = binaries
        self._extra_args = tuple(extra_args)
        self._workdir: Path | None = None
        self._children: list[_Child] = []
        self._port: int | None = None
        self._admin: client.ApiClient | None = None
        self.started_in_s: float | None = None

    # Lifecycle

    def start(self) -> Self:
        began = time.monotonic()
        binaries = self._binaries or build_binaries()
        self._workdir = work = Path(tempfile.mkdtemp(prefix="canary-kube-"))
        atexit.register(self.close)  # no orphaned servers if the test run ends abruptly
        try:
            make_pki(work)
            (work / "tokens.csv").write_text(token_file(self.users))
            etcd_url = f"http://127.0.0.1:{free_port()}"
            self._spawn_etcd(binaries.etcd, etcd_url)
            self._port = free_port()
            self._spawn_apiserver(binaries.kube_apiserver, etcd_url, self._port)
            self._wait_ready(began + START_TIMEOUT_S)
            self._admin = self.api_client()
            install_istio_crds(self._admin, deadline=began + START_TIMEOUT_S)
            for namespace in self._namespaces:
                self.create_namespace(namespace)
        except BaseException as e:
            report = self._failure_report(str(e))
            self.close()
            if isinstance(e, RealKubeError | OSError | client.ApiException):
                raise RealKubeError(report) from e
            raise
        self.started_in_s = time.monotonic() - began
        return self

    def close(self) -> None:
        """Stop the apiserver, then etcd (SIGTERM, then SIGKILL), and remove the temp dir."""
        atexit.unregister(self.close)
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        for child in reversed(self._children):
            child.stop()
        self._children = []
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # What tests use

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("the control plane is not started")
        return f"https://127.0.0.1:{self._port}"

    @property
    def ca_file(self) -> Path:
        return self._work / "ca.crt"

    @property
    def admin(self) -> client.ApiClient:
        """The admin's client, shared; closed with the control plane."""
        if self._admin is None:
            raise RuntimeError("the control plane is not started")
        return self._admin

    @property
    def admin_kubeconfig(self) -> Path:
        return self.kubeconfig_for(ADMIN_TOKEN, name="admin")

    def api_client(self, token: str = ADMIN_TOKEN) -> client.ApiClient:
        """A new ApiClient that sends `token`; the caller closes it."""
        configuration = client.Configuration(host=self.url)
        configuration.ssl_ca_cert = str(self.ca_file)
        configuration.proxy = None  # the 37.x client reads HTTP(S)_PROXY; loopback needs none
        configuration.api_key = {"BearerToken": token}
        configuration.api_key_prefix = {"BearerToken": "Bearer"}
        return client.ApiClient(configuration)

    def kubeconfig_for(
        self, token: str, *, name: str | None = None, namespace: str = "default"
    ) -> Path:
        """A kubeconfig file (in the temp dir) for this server that sends `token`: a static
        user's, a ServiceAccount's, or any other."""
        name = name or f"user-{uuid.uuid4().hex[:8]}"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "real-kube",
                    "cluster": {"server": self.url, "certificate-authority": str(self.ca_file)},
                }
            ],
            "users": [{"name": name, "user": {"token": token}}],
            "contexts": [
                {
                    "name": name,
                    "context": {"cluster": "real-kube", "user": name, "namespace": namespace},
                }
            ],
            "current-context": name,
            "preferences": {},
        }
        path = self._work / "kubeconfigs" / f"{name}.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def create_namespace(self, name: str) -> str:
        """Create namespace `name` if it is not there; return its name."""
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        try:
            client.CoreV1Api(self.admin).create_namespace(body)
        except client.ApiException as e:
            if e.status != 409:
                raise
        return name

    def new_namespace(self, prefix: str = "test") -> str:
        """A fresh namespace with a unique name, for one test's objects."""
        return self.create_namespace(f"{prefix}-{uuid.uuid4().hex[:8]}")

    def service_account_token(self, namespace: str, name: str, *, expiration_s: int = 3600) -> str:
        """A token for ServiceAccount `namespace/name` (created if missing), by TokenRequest."""
        core = client.CoreV1Api(self.admin)
        try:
            core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
        except client.ApiException as e:
            if e.status != 409:
                raise
        request = {"spec": {"expirationSeconds": expiration_s}}
        answer = core.create_namespaced_service_account_token(name, namespace, request)
        return str(answer.status.token)

    def logs(self) -> str:
        """The end of each process's log."""
        return "\n".join(child.tail() for child in self._children)

    # Internals

    @property
    def _work(self) -> Path:
        if self._workdir is None:
            raise RuntimeError("the control plane is not started")
        return self._workdir

    def _spawn(self, name: str, argv: list[str]) -> _Child:
        child = _Child(name, argv, self._work / f"{name}.log")
        self._children.append(child)
        return child

    def _spawn_etcd(self, etcd: Path, url: str) -> None:
        argv = [
            str(etcd),
            "--name=canary-test",
            f"--data-dir={self._work / 'etcd'}",
            f"--listen-client-url={url}",
            f"--listen-peer-url=http://127.0.0.1:{free_port()}",
            "--unsafe-no-fsync",  # throwaway data: a test cluster need not survive a power cut
        ]
        self._spawn("etcd", argv)

    def _spawn_apiserver(self, apiserver: Path, etcd_url: str, port: int) -> None:
        work = self._work
        argv = [
            str(apiserver),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={work / 'certs'}",
            f"--tls-cert-file={work / 'server.crt'}",
            f"--tls-private-key-file={work / 'server.key'}",
            f"--client-ca-file={work / 'ca.crt'}",
            f"--token-auth-file={work / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            f"--service-account-issuer={ISSUER}",
            f"--service-account-key-file={work / 'sa.pub'}",
            f"--service-account-signing-key-file={work / 'sa.key'}",
            "--service-cluster-ip-range=10.0.0.0/24",
            # No controller-manager makes namespaces' `default` ServiceAccounts: with this plugin
            # on, creating any pod is refused for lack of one.
            "--disable-admission-plugins=ServiceAccount",
            # Nothing serves the `kubernetes` Service's endpoints here; don't advertise any.
            "--endpoint-reconciler-type=none",
            "--profiling=false",
            "--v=1",
            *self._extra_args,
        ]
        self._spawn("kube-apiserver", argv)

    def _wait_ready(self, deadline: float) -> None:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        request = urllib.request.Request(
            f"{self.url}/readyz", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        last = "no answer yet"
        while time.monotonic() < deadline:
            for child in self._children:
                if (code := child.exited()) is not None:
                    raise RealKubeError(f"{child.name} exited with code {code} while starting")
            try:
                with urllib.request.urlopen(request, timeout=5, context=context) as reply:
                    if reply.status == 200:
                        return
            except urllib.error.HTTPError as e:
                last = f"/readyz answered {e.code}: {e.read().decode(errors='replace')[-500:]}"
            except (OSError, ssl.SSLError) as e:
                last = f"{type(e).__name__}: {e}"
            time.sleep(0.2)
        raise RealKubeError(f"kube-apiserver was not ready within {START_TIMEOUT_S:.0f} s ({last})")

    def _failure_report(self, reason: str) -> str:
        return f"the real control plane did not start: {reason}\n{self.logs()}"


# --- Istio's CRDs ------------------------------------------------------------------------------


def crd_documents() -> list[dict[str, Any]]:
    """The full Istio CRDs bundled in tests/support/crds (copies of ../shared/istio)."""
    documents = []
    for path in sorted(CRD_DIR.glob("*.crd.yaml")):
        documents.append(yaml.load(path.read_text(), Loader=yaml.CSafeLoader))
    return documents


def install_istio_crds(api: client.ApiClient, *, deadline: float) -> None:
    """Create the bundled CRDs, then wait until each is Established and its kinds are in
    discovery (what `KubeMesh` looks at first)."""
    extensions = client.ApiextensionsV1Api(api)
    names = []
    for crd in crd_documents():
        try:
            extensions.create_custom_resource_definition(crd)
        except client.ApiException as e:
            if e.status != 409:
                raise
        names.append(crd["metadata"]["name"])
    for name in names:
        while not _established(extensions.read_custom_resource_definition(name)):
            _before(deadline, f"CRD {name} Established")
    for crd in crd_documents():
        group, plural = crd["spec"]["group"], crd["spec"]["names"]["plural"]
        for version in (v["name"] for v in crd["spec"]["versions"] if v["served"]):
            while not _discovered(api, group, version, plural):
                _before(deadline, f"{plural}.{group}/{version} in discovery")


def _established(crd: Any) -> bool:
    conditions = (crd.status and crd.status.conditions) or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)


def _discovered(api: client.ApiClient, group: str, version: str, plural: str) -> bool:
    try:
        listing = client.CustomObjectsApi(api).get_api_resources(group, version)
    except client.ApiException as e:
        if e.status == 404:
            return False
        raise
    return any(r.name == plural for r in listing.resources)


def _before(deadline: float, what: str) -> None:
    if time.monotonic() > deadline:
        raise RealKubeError(f"no {what} within the start timeout")
    time.sleep(0.05)


# --- pytest --------------------------------------------------------------------------------------

_build_error: RealKubeError | None = None
_built: Binaries | None = None


def _skip_reason() -> str | None:
    if os.environ.get(SKIP_ENV) == "1":
        return f"{SKIP_ENV}=1: the tests against a real kube-apiserver are skipped"
    return None


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the binaries before the first test that needs them, outside its timeout (the first
    build takes many minutes); an error is kept and raised by `real_kube` in each such test."""
    global _build_error, _built  # noqa: PLW0603 - one build per pytest session
    if _built or _build_error or _skip_reason() or session.config.option.collectonly:
        return
    if not any("real_kube" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"real_kube: {BUILD_SCRIPT.relative_to(ROOT)} (slow on first use)")
    try:
        _built = build_binaries()
    except RealKubeError as e:
        _build_error = e


@pytest.fixture(scope="session")
def real_kube() -> Iterator[RealKube]:
    """A real kube-apiserver with Istio's CRDs, shared by the whole session; tests make their own
    namespaces (`real_kube.new_namespace()`). Fails, never skips, when it cannot be had, unless
    CANARY_SKIP_REAL_KUBE=1."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    if _build_error is not None:
        pytest.fail(f"cannot build the real kube-apiserver: {_build_error}", pytrace=False)
    try:
        kube = RealKube(users=[VIEWER], binaries=_built or build_binaries()).start()
    except RealKubeError as e:
        pytest.fail(str(e), pytrace=False)
    with contextlib.closing(kube):
        yield kube
