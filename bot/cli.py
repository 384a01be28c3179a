"""`canary-bot` on the command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from bot import runners
from bot.mesh.errors import MeshError
from bot.mesh.httproute import plan_http_route
from bot.mesh.planner import TrafficPlan, plan_traffic
from bot.mesh.request import SplitRequest, parse_percent
from commands import parse_cohort
from commands.grammar import GrammarError, PodLabels, parse_labels

EXIT_USAGE = 2


class CliError(Exception):
    """A mistake in what the user gave us; printed as one line, exit 2."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except (CliError, MeshError, *runners.USER_ERRORS) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="canary-bot", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    _add_plan(commands)
    _add_demo(commands)
    _add_rollout(commands)
    _add_serve(commands)
    _add_shell(commands)
    _add_policy(commands)
    check = commands.add_parser(
        "check-config", help="reach Slack, Redis, Kubernetes and Prometheus, and say what is wrong"
    )
    check.set_defaults(run=runners.run_check_config)
    return parser


def _add_plan(commands: Any) -> None:
    plan = commands.add_parser(
        "plan", help="render the change to VirtualService/DestinationRule YAML files"
    )
    plan.add_argument("files", nargs="+", metavar="FILE", type=Path)
    plan.add_argument("--vs", required=True, help="the VirtualService to split")
    plan.add_argument("--namespace", default="default", help="for objects without one")
    plan.add_argument("--weight", help="the canary's share, 0..100")
    plan.add_argument("--to", help="the canary subset (needed when several could be)")
    plan.add_argument("--route", action="append", default=[], help="only this http route")
    plan.add_argument(
        "--labels", help="the pods a new canary subset selects: 'version=v3,track=canary'"
    )
    plan.add_argument("--mirror", help="mirror this share of traffic to the canary (0 = off)")
    plan.add_argument(
        "--cohort", help="route a cohort to the canary: 'header x-beta=1', 'user jason', 'off'"
    )
    plan.add_argument("-o", "--output", choices=("yaml", "patch", "diff"), default="yaml")
    plan.set_defaults(run=run_plan)


def _add_demo(commands: Any) -> None:
    demo = commands.add_parser("demo", help="the embedded sandbox and a rollout you can watch")
    demo.add_argument(
        "--interactive",
        action="store_true",
        help="after the two rollouts, stay at the shell prompt",
    )
    demo.add_argument(
        "--charts",
        type=Path,
        default=Path("demo-output"),
        help="where to save the charts (default: ./demo-output)",
    )
    demo.set_defaults(run=_run_demo)


def _add_rollout(commands: Any) -> None:
    rollout = commands.add_parser("rollout", help="drive staged rollouts directly")
    verbs = rollout.add_subparsers(required=True, metavar="VERB")
    start = verbs.add_parser("start", help="begin a staged rollout")
    start.add_argument("service", help="VirtualService, as `name` or `name.namespace`")
    start.add_argument("--to", help="the canary subset")
    start.add_argument("--steps", default="5,10,25,50,100", help="canary weights, e.g. 5,25,100")
    start.add_argument("--every", default="5m", help="time between steps: 30s, 5m, 1h")
    start.add_argument(
        "--analysis", help="how often a held step is looked at: 10s, or off (default: policy's)"
    )
    start.add_argument(
        "--clusters", help="a wave over these CANARY_CLUSTERS, in order: canary-eu,prod-eu"
    )
    start.add_argument("--as", dest="actor", default="cli", help="who is asking (for the audit)")
    start.set_defaults(run=runners.run_start)
    for verb, text in runners.VERBS.items():
        sub = verbs.add_parser(verb, help=text)
        sub.add_argument("service", help="VirtualService, as `name` or `name.namespace`")
        sub.add_argument("--as", dest="actor", default="cli", help="who is asking")
        sub.add_argument("--cluster", help="the wave cluster whose rollout it acts on")
        sub.set_defaults(run=runners.run_verb, verb=verb)
    status = verbs.add_parser("status", help="where a service's rollout stands")
    status.add_argument("service")
    status.set_defaults(run=runners.run_status)
    listing = verbs.add_parser("list", help="active rollouts")
    listing.set_defaults(run=runners.run_list)


def _add_serve(commands: Any) -> None:
    serve = commands.add_parser("serve", help="lead, schedule and drive rollouts")
    serve.set_defaults(run=runners.run_serve)


def _add_shell(commands: Any) -> None:
    shell = commands.add_parser("shell", help="the chat pipeline in a terminal")
    shell.add_argument("--user", default="U0SHELL", help="who you are (a Slack user ID)")
    shell.add_argument("--channel", default="C0SHELL", help="which channel you are in")
    shell.add_argument(
        "--sandbox",
        action="store_true",
        help="no cluster or Redis needed: start the embedded playground",
    )
    shell.set_defaults(run=runners.run_shell)


def _add_policy(commands: Any) -> None:
    policy = commands.add_parser("policy", help="check a policy file, or explain a decision")
    verbs = policy.add_subparsers(required=True, metavar="VERB")
    check = verbs.add_parser("check", help="validate a policy file (exit 2 with every problem)")
    check.add_argument("file", type=Path)
    check.set_defaults(run=runners.run_policy_check)
    explain = verbs.add_parser("explain", help="what the policy decides, and why")
    explain.add_argument("file", type=Path)
    explain.add_argument("--user", required=True, help="a Slack member ID, U…")
    explain.add_argument("--groups", nargs="*", default=[], help="user-group IDs, S…")
    explain.add_argument("--action", required=True, help="set-weight, start, promote, ...")
    explain.add_argument("--service", required=True, help="VS or VS.NAMESPACE")
    explain.add_argument("--at", help="ISO time (default: now)")
    explain.add_argument("--weight-before", type=int)
    explain.add_argument("--weight-after", type=int)
    explain.set_defaults(run=runners.run_policy_explain)


def run_plan(args: argparse.Namespace) -> int:
    request = SplitRequest.build(
        vs=args.vs,
        namespace=args.namespace,
        weight=_percent(args.weight, "weight"),
        mirror=_percent(args.mirror, "mirror"),
        cohort=None if args.cohort is None else parse_cohort(args.cohort),
        to=args.to,
        labels=None if args.labels is None else _labels(args.labels),
        routes=tuple(args.route),
    )
    objects = _read_objects(args.files)
    route = _find(objects, request, "HTTPRoute")
    if route is not None and _find(objects, request, "VirtualService") is None:
        plan = plan_http_route(route, request, now=None)  # as the bot: no VS, its HTTPRoute
    else:
        vs = _find_virtual_service(objects, request)
        ns = request.namespace
        drs = [o for o in objects if o["kind"] == "DestinationRule" and _ns(o, ns) == ns]
        plan = plan_traffic(vs, drs, request, now=None)
    sys.stdout.write(render(plan, args.output))
    return 0


def _labels(text: str) -> PodLabels:
    try:
        return parse_labels(text)
    except GrammarError as e:
        raise CliError(f"--labels: {e}") from None


def render(plan: TrafficPlan, output: str) -> str:
    if output == "diff":
        return plan.diff
    if output == "patch":
        patches = [
            {"kind": c.kind, "namespace": c.namespace, "name": c.name, "patch": c.guarded_ops()}
            for c in plan.changes
        ]
        return json.dumps(patches, indent=2) + "\n"
    docs = [plan.vs.after] + ([plan.dr.after] if plan.dr else [])
    return yaml.safe_dump_all(docs, sort_keys=False, explicit_start=True)


def _percent(text: str | None, what: str) -> int | None:
    return None if text is None else parse_percent(text, what)


def _read_objects(paths: Sequence[Path]) -> list[dict[str, Any]]:
    objects = []
    for path in paths:
        for doc in _load(path):
            if isinstance(doc, dict) and doc.get("kind") in _KINDS:
                objects.append(doc)  # as written: no namespace added where the file has none
    return objects


_KINDS = ("VirtualService", "DestinationRule", "HTTPRoute")


def _load(path: Path) -> list[Any]:
    try:
        return list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    except OSError as e:
        raise CliError(f"cannot read {path}: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise CliError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from e


def _find_virtual_service(objects: list[dict[str, Any]], request: SplitRequest) -> dict[str, Any]:
    found = _find(objects, request, "VirtualService")
    if found is None:
        where = f"'{request.vs}' in namespace '{request.namespace}'"
        raise CliError(f"no VirtualService or HTTPRoute {where} in the files given")
    return found


def _find(objects: list[dict[str, Any]], request: SplitRequest, kind: str) -> dict[str, Any] | None:
    """The one object of `kind` named as the request says, if the files have it."""
    found = [
        o
        for o in objects
        if o["kind"] == kind
        and (_name(o), _ns(o, request.namespace)) == (request.vs, request.namespace)
    ]
    if len(found) > 1:
        where = f"{kind} '{request.vs}' in namespace '{request.namespace}'"
        raise CliError(f"{where} appears {len(found)} times in the files given; pass only one")
    return found[0] if found else None


def _name(obj: dict[str, Any]) -> Any:
    return (obj.get("metadata") or {}).get("name")


def _ns(obj: dict[str, Any], default: str) -> Any:
    """The object's namespace; one read from a file without it is in the namespace asked for."""
    return (obj.get("metadata") or {}).get("namespace") or default


def _run_demo(args: argparse.Namespace) -> int:
    demo = runners.sandbox_module("demo")
    return int(demo.run_demo(interactive=args.interactive, charts=args.charts))


if __name__ == "__main__":
    sys.exit(main())
