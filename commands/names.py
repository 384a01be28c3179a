"""How chat names a service, in one place: `weather` in the default namespace, `weather.prod`
elsewhere. Names are Kubernetes DNS-1123 labels."""

from __future__ import annotations

import re

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DEFAULT_NAMESPACE = "default"
# A cluster of a multi-cluster wave, as the settings and chat name it: `canary-eu`.
CLUSTER_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?")
CLUSTER_RULE = "lowercase letters, digits and '-'"


def service_name(vs: str, namespace: str) -> str:
    """`weather`, or `weather.prod` outside the default namespace."""
    return vs if namespace == DEFAULT_NAMESPACE else f"{vs}.{namespace}"
