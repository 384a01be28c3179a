"""Where istioctl and the planner disagree, with the reason: the plans test_istioctl.py and
test_istioctl_shapes.py expect istioctl to fail (each entry must still fail, else it goes)."""

from __future__ import annotations

# Where istioctl disagrees with the planner: "validate:<plan id>" or "analyze:<plan id>" -> the
# disagreement. test_istioctl_shapes.py's corpus plans are named by their VirtualService
# ("<file>#<index>:<name>"), which stands for each of its plans.
_REMOVED_FIELD = (
    "the live VirtualService has http[].websocketUpgrade, a field Istio no longer has, which "
    "istioctl refuses (as any field it does not know); the planner keeps fields it does not "
    "know, as a newer Istio's may be, and leaves this one as it was. A real API server prunes "
    "it (the CRD does not describe it: tests/kube/DIVERGENCES.md #1), so it is never live there"
)
DISAGREEMENTS: dict[str, str] = {
    "validate:istio+istio/tests__testdata__config__rule-websocket-route.yaml#1:websocket-route": (
        _REMOVED_FIELD
    ),
    "validate:istio+istio/tests__testdata__config__rule-websocket-route.yaml#2:websocket-route2": (
        _REMOVED_FIELD
    ),
}
