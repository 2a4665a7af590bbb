"""Where the platform's Kubernetes credentials come from, first found wins:

1. ``KUBE_CONFIG`` — a whole kubeconfig, base64-encoded (the deployment guide's GitHub secret);
2. ``kubernetes.kubeconfig`` in ``sophia.yaml`` — a kubeconfig file;
3. ``$KUBECONFIG`` — a kubeconfig file (the first of a colon-separated list);
4. ``~/.kube/config``;
5. the in-cluster service account (when the engine itself runs in a pod).

Errors say which source failed and why, never what it contained.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

import yaml
from lightkube.config.kubeconfig import KubeConfig

from sophia.config import Settings
from sophia.engine.ports import PreflightError

IN_CLUSTER_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


def load(settings: Settings, env: dict[str, str] | None = None) -> KubeConfig:
    environ = os.environ if env is None else env
    if settings.kube_config is not None:
        return _from_base64(settings.kube_config.get_secret_value())
    for candidate in (settings.kubernetes.kubeconfig, _first(environ.get("KUBECONFIG"))):
        if candidate is not None:
            return _from_file(candidate)
    default = Path.home() / ".kube" / "config"
    if default.is_file():
        return _from_file(default)
    if IN_CLUSTER_TOKEN.is_file():
        return KubeConfig.from_service_account()
    raise PreflightError(
        "no Kubernetes credentials: set KUBE_CONFIG (a base64 kubeconfig), kubernetes.kubeconfig or KUBECONFIG"
    )


def _first(value: str | None) -> Path | None:
    return Path(value.split(os.pathsep)[0]).expanduser() if value else None


def _from_base64(text: str) -> KubeConfig:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
        document = yaml.safe_load(raw)
    except (binascii.Error, ValueError, yaml.YAMLError):
        raise PreflightError("KUBE_CONFIG is not a base64-encoded kubeconfig") from None
    return _parsed(document, "KUBE_CONFIG")


def _from_file(path: Path) -> KubeConfig:
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise PreflightError(f"cannot read kubeconfig {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError:
        raise PreflightError(f"kubeconfig {path} is not valid YAML") from None
    return _parsed(document, f"kubeconfig {path}", path)


def _parsed(document: object, what: str, path: Path | None = None) -> KubeConfig:
    if not isinstance(document, dict) or not document.get("clusters") or not document.get("contexts"):
        raise PreflightError(f"{what} has no clusters or contexts")
    try:
        return KubeConfig.from_dict(document, fname=path)
    except (KeyError, TypeError, ValueError) as exc:
        raise PreflightError(f"{what} is not a usable kubeconfig ({type(exc).__name__})") from None
