"""The Kubernetes + Istio platform (see ``platform.py``)."""

from sophia.platforms.kubernetes.platform import KubernetesPlatform

__all__ = ["KubernetesPlatform"]
