"""Policy files (YAML) and their pure evaluation: who may do what to which service, and when."""

from policies.decide import (
    READ_ONLY,
    approvers,
    decide,
    drill_limits,
    mention,
    rollout_defaults,
    staged_gates,
    to_alert,
)
from policies.errors import PolicyError, Problem
from policies.explain import check, explain, summary
from policies.load import load_policy
from policies.model import (
    RAISING_ACTIONS,
    SAFE_ACTIONS,
    Action,
    Actor,
    Allow,
    Approval,
    Change,
    Decision,
    Deny,
    DrillSettings,
    HealthThresholds,
    NeedsApproval,
    PlacedRule,
    Policy,
    Rule,
    StepPlanFields,
    Target,
    is_user,
)

SHIPPED = ("dev.yaml", "production.yaml")  # package data next to this file

__all__ = [
    "RAISING_ACTIONS",
    "READ_ONLY",
    "SAFE_ACTIONS",
    "SHIPPED",
    "Action",
    "Actor",
    "Allow",
    "Approval",
    "Change",
    "Decision",
    "Deny",
    "DrillSettings",
    "HealthThresholds",
    "NeedsApproval",
    "PlacedRule",
    "Policy",
    "PolicyError",
    "Problem",
    "Rule",
    "StepPlanFields",
    "Target",
    "approvers",
    "check",
    "decide",
    "drill_limits",
    "explain",
    "is_user",
    "load_policy",
    "mention",
    "rollout_defaults",
    "staged_gates",
    "summary",
    "to_alert",
]
