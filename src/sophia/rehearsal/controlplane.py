"""A real Kubernetes control plane on loopback: etcd, kube-apiserver and kube-controller-manager as local processes.

The binaries are the real ones, built from Go modules by ``tools/controlplane/build.sh`` into a cache folder outside
the checkout. They are started the way controller-runtime's envtest starts them: etcd without fsync, the apiserver
with TLS from a throwaway CA, client-certificate authentication, RBAC authorization and service-account tokens, and
the controller manager with the controllers a Deployment needs. There is no kubelet and no scheduler: the
rehearsal's own kubelet (``kubelet.py``) binds pods and reports their status. Istio's CRDs (from the ``istio.io/api``
module, copied by the build) are installed at start, so VirtualServices and DestinationRules are validated by the
real apiserver. The aggregation layer is configured as kubeadm configures it (a front-proxy CA, the client
certificate the aggregator presents to extension API servers, the request-header flags), so an APIService can put
an extension API — the rehearsal's metrics API (``metrics_api.py``) — behind the apiserver.
"""

from __future__ import annotations

import os
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import httpx
import trustme
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sophia.platforms.local import supervisor
from sophia.platforms.local.state import ProcessRef

K8S_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.16"
SERVICE_CIDR = "10.0.0.0/16"
# The aggregation layer: the name in the client certificate the aggregator presents to extension API servers, and
# the Service (of type ExternalName, see aggregation.py) the metrics APIService points at — whose DNS name the
# aggregator expects in the extension server's certificate.
FRONT_PROXY_CLIENT = "front-proxy-client"
METRICS_SERVICE = ("kube-system", "metrics-server")
# What a Deployment needs, and nothing that expects kubelets on nodes (node lifecycle would evict our pods).
CONTROLLERS = (
    "deployment-controller",
    "replicaset-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "disruption-controller",
    "endpointslice-controller",
    "pod-garbage-collector-controller",
    "clusterrole-aggregation-controller",
)
# The audit policy: who did what, at the Metadata level, for requests that change or read our objects.
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [{"level": "Metadata"}],
}


class ControlPlaneError(RuntimeError):
    """The control plane could not be started (missing binaries, a component exited, not ready in time)."""


def default_dir() -> Path:
    cache = Path(os.environ.get("SOPHIA_CACHE_DIR") or Path.home() / ".cache" / "sophia")
    return Path(
        os.environ.get("SOPHIA_CONTROLPLANE_DIR") or cache / "controlplane" / f"k8s-{K8S_VERSION}-etcd-{ETCD_VERSION}"
    )


@dataclass(frozen=True)
class Binaries:
    """The built control plane: ``bin/`` with etcd, kube-apiserver, kube-controller-manager, kubectl; ``crds/``."""

    root: Path

    @classmethod
    def find(cls, root: Path | None = None) -> Binaries | None:
        """The build in ``root`` (default: the cache folder) if it is complete, else None."""
        found = cls(root or default_dir())
        return found if (found.root / ".complete").is_file() else None

    def bin(self, name: str) -> Path:
        return self.root / "bin" / name

    @property
    def istio_crds(self) -> Path:
        return self.root / "crds" / "istio.yaml"


@dataclass(frozen=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int


@dataclass(frozen=True)
class Credentials:
    """Files under the control plane's home: the CA, the apiserver's serving cert, client certs, the SA key."""

    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"

    def pem(self, name: str) -> Path:
        return self.folder / f"{name}.pem"

    def key(self, name: str) -> Path:
        return self.folder / f"{name}-key.pem"

    @property
    def service_account_key(self) -> Path:
        return self.folder / "service-account-key.pem"

    @property
    def front_proxy_ca(self) -> Path:
        """The CA of the aggregator's client certificate: extension API servers trust requests signed by it."""
        return self.folder / "front-proxy-ca.pem"

    def create(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        ca = trustme.CA(organization_name="sophia rehearsal")
        ca.cert_pem.write_to_path(str(self.ca))
        hosts = ["127.0.0.1", "localhost", "10.0.0.1", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                 "kubernetes.default.svc.cluster.local"]  # fmt: skip
        self._write("apiserver", ca.issue_cert(*hosts, common_name="kube-apiserver"))
        self._write(
            "admin", ca.issue_cert("sophia-admin", common_name="sophia-admin", organization_name="system:masters")
        )
        self._write(
            "controller-manager",
            ca.issue_cert("kube-controller-manager", common_name="system:kube-controller-manager"),
        )
        # The aggregation layer: a CA of its own for the front proxy (as kubeadm makes it), and the serving cert of
        # the metrics API, issued by the cluster CA (its APIService's caBundle) for the name the aggregator dials.
        front_proxy = trustme.CA(organization_name="sophia rehearsal front proxy")
        front_proxy.cert_pem.write_to_path(str(self.front_proxy_ca))
        self._write(FRONT_PROXY_CLIENT, front_proxy.issue_cert(FRONT_PROXY_CLIENT, common_name=FRONT_PROXY_CLIENT))
        namespace, name = METRICS_SERVICE
        self._write("metrics-server", ca.issue_cert(f"{name}.{namespace}.svc", "localhost", "127.0.0.1",
                                                    common_name=f"{name}.{namespace}.svc"))  # fmt: skip
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.service_account_key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        for path in self.folder.iterdir():
            path.chmod(0o600)

    def _write(self, name: str, cert: trustme.LeafCert) -> None:
        cert.cert_chain_pems[0].write_to_path(str(self.pem(name)))
        cert.private_key_pem.write_to_path(str(self.key(name)))


def kubeconfig(server: str, ca: Path, *, user: str, cert: Path | None = None, key: Path | None = None,
               token: str | None = None, namespace: str = "default") -> dict[str, object]:  # fmt: skip
    """A kubeconfig with one cluster, one user (a client certificate or a bearer token) and one context."""
    credentials: dict[str, str] = (
        {"token": token} if token else {"client-certificate": str(cert), "client-key": str(key)}
    )
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "rehearsal", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": "rehearsal", "context": {"cluster": "rehearsal", "user": user, "namespace": namespace}}],
        "current-context": "rehearsal",
    }


def write_private(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text)
    return path


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager with their files in ``home``."""

    def __init__(self, home: Path, binaries: Binaries, ports: Ports, *, die_with_parent: bool = False) -> None:
        self.home = home
        self.binaries = binaries
        self.ports = ports
        self.credentials = Credentials(home / "pki")
        self._die_with_parent = die_with_parent
        self.processes: dict[str, ProcessRef] = {}

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.ports.apiserver}"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.home / "admin.kubeconfig"

    @property
    def audit_log(self) -> Path:
        return self.home / "logs" / "audit.log"

    def log(self, name: str) -> Path:
        return self.home / "logs" / f"{name}.log"

    def start(self, timeout_s: float = 90.0) -> None:
        """Start all three components and install Istio's CRDs; on any failure stop what was started.

        Blocking, and meant for the thread that will outlive the processes: with ``die_with_parent`` they end
        when the thread that started them does.
        """
        try:
            self._prepare()
            self._spawn("etcd", self._etcd_argv())
            self._spawn("kube-apiserver", self._apiserver_argv())
            self._wait_ready(timeout_s)
            self._spawn("kube-controller-manager", self._controller_manager_argv())
            self._install_crds()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        refs = [self.processes.pop(name) for name in reversed(list(self.processes))]
        supervisor.stop(refs)

    def alive(self) -> dict[str, bool]:
        return {name: supervisor.alive(ref) for name, ref in self.processes.items()}

    # -- start-up ------------------------------------------------------------------------------------------------

    def _prepare(self) -> None:
        for name in ("etcd", "kube-apiserver", "kube-controller-manager"):
            if not self.binaries.bin(name).is_file():
                raise ControlPlaneError(f"{name} is missing from {self.binaries.root}: run tools/controlplane/build.sh")
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        self.credentials.create()
        (self.home / "audit-policy.yaml").write_text(yaml.safe_dump(AUDIT_POLICY))
        creds = self.credentials
        admin = kubeconfig(self.url, creds.ca, user="sophia-admin", cert=creds.pem("admin"), key=creds.key("admin"))
        write_private(self.admin_kubeconfig, yaml.safe_dump(admin))
        manager = kubeconfig(self.url, creds.ca, user="system:kube-controller-manager",
                             cert=creds.pem("controller-manager"), key=creds.key("controller-manager"))  # fmt: skip
        write_private(self.home / "controller-manager.kubeconfig", yaml.safe_dump(manager))

    def _spawn(self, name: str, argv: list[str]) -> None:
        self.processes[name] = supervisor.spawn(
            argv, home=self.home, env={}, log=self.log(name), die_with_parent=self._die_with_parent
        )

    def _etcd_argv(self) -> list[str]:
        client, peer = f"http://127.0.0.1:{self.ports.etcd_client}", f"http://127.0.0.1:{self.ports.etcd_peer}"
        return [
            str(self.binaries.bin("etcd")),
            "--name=rehearsal",
            f"--data-dir={self.home / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=rehearsal={peer}",
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ]

    def _apiserver_argv(self) -> list[str]:
        creds = self.credentials
        return [
            str(self.binaries.bin("kube-apiserver")),
            f"--etcd-servers=http://127.0.0.1:{self.ports.etcd_client}",
            f"--secure-port={self.ports.apiserver}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--cert-dir={self.home / 'apiserver-certs'}",
            f"--tls-cert-file={creds.pem('apiserver')}",
            f"--tls-private-key-file={creds.key('apiserver')}",
            f"--client-ca-file={creds.ca}",
            # The aggregation layer (routing stays at its default: an APIService's Service is resolved by
            # ResolveCluster, which dials an ExternalName Service's externalName).
            f"--requestheader-client-ca-file={creds.front_proxy_ca}",
            f"--requestheader-allowed-names={FRONT_PROXY_CLIENT}",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={creds.pem(FRONT_PROXY_CLIENT)}",
            f"--proxy-client-key-file={creds.key(FRONT_PROXY_CLIENT)}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={creds.service_account_key}",
            f"--service-account-signing-key-file={creds.service_account_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--disable-admission-plugins=ServiceAccount",
            "--endpoint-reconciler-type=none",
            "--allow-privileged=false",
            f"--audit-policy-file={self.home / 'audit-policy.yaml'}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
            "-v=1",
        ]

    def _controller_manager_argv(self) -> list[str]:
        creds = self.credentials
        config = self.home / "controller-manager.kubeconfig"
        return [
            str(self.binaries.bin("kube-controller-manager")),
            f"--kubeconfig={config}",
            f"--authentication-kubeconfig={config}",
            f"--authorization-kubeconfig={config}",
            "--leader-elect=false",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={creds.service_account_key}",
            f"--root-ca-file={creds.ca}",
            f"--controllers={','.join(CONTROLLERS)}",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            "--concurrent-deployment-syncs=10",
            "--concurrent-replicaset-syncs=10",
            "-v=1",
        ]

    def _wait_ready(self, timeout_s: float) -> None:
        """Until ``/readyz`` answers ``ok``; fail early when etcd or the apiserver exits."""
        creds = self.credentials
        context = ssl.create_default_context(cafile=str(creds.ca))
        context.load_cert_chain(str(creds.pem("admin")), str(creds.key("admin")))
        deadline = time.monotonic() + timeout_s
        with httpx.Client(verify=context, timeout=2.0, trust_env=False) as client:
            while True:
                for name, alive in self.alive().items():
                    if not alive:
                        raise ControlPlaneError(f"{name} exited: {supervisor.log_tail(self.log(name), 5)}")
                try:
                    if client.get(f"{self.url}/readyz").text == "ok":
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    tail = supervisor.log_tail(self.log("kube-apiserver"), 5)
                    raise ControlPlaneError(f"kube-apiserver not ready after {timeout_s:g}s: {tail}")
                time.sleep(0.2)

    def _install_crds(self) -> None:
        """Istio's networking CRDs (and the rest of istio.io/api's), established before the first use."""
        from lightkube import Client
        from lightkube.config.kubeconfig import KubeConfig
        from lightkube.resources.apiextensions_v1 import CustomResourceDefinition

        client = Client(KubeConfig.from_file(self.admin_kubeconfig), field_manager="sophia-rehearsal")
        try:
            documents = [d for d in yaml.safe_load_all(self.binaries.istio_crds.read_text()) if d]
            names = []
            for document in documents:
                client.apply(cast(CustomResourceDefinition, CustomResourceDefinition.from_dict(document)), force=True)
                names.append(document["metadata"]["name"])
            deadline = time.monotonic() + 30
            while not all(_established(client.get(CustomResourceDefinition, name)) for name in names):
                if time.monotonic() > deadline:
                    raise ControlPlaneError("Istio's CRDs were not established within 30s")
                time.sleep(0.1)
        finally:
            client.close()


def _established(crd: object) -> bool:
    status = getattr(crd, "status", None)
    conditions = getattr(status, "conditions", None) or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)
