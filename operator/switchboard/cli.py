"""`switchboard`: one entry point for every role.

    switchboard crds [--out DIR]                 the CustomResourceDefinitions
    switchboard render PATH... [-o yaml|json]    the routing config of each namespace
    switchboard validate PATH... [--format ...]  problems, one per line; exit 1 if any
    switchboard probe URL [--model M]            which APIs a model server answers (apis:)
    switchboard gateway ...                      the data plane        (switchboard.gateway)
    switchboard operator ...                     the control plane     (switchboard.controller)
    switchboard config-sync ...                  the gateway's sidecar (switchboard.controller)

Role commands are imported only when called, so the offline tools start fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, cast

import orjson
import yaml

from switchboard import __version__, manifests, probe
from switchboard.api import crdgen
from switchboard.routing import config as rc
from switchboard.routing.problems import Reason, Severity

ROLES = {
    "gateway": (
        "switchboard.gateway.cli",
        "serve the OpenAI and Anthropic APIs from a routing config",
    ),
    "operator": ("switchboard.controller.cli", "run the operator (kopf) against the cluster"),
    "usage": (
        "switchboard.gateway.limits.usage",
        "print the spend of each key's budgets per window, from the limits store",
    ),
    "config-sync": (
        "switchboard.controller.config_sync",
        "sidecar: mirror the routing Secret into a file for the gateway",
    ),
}


class Role(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...
    def run(self, args: argparse.Namespace) -> int: ...


def _add_source_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="manifest files or directories")
    p.add_argument(
        "--secrets",
        action="append",
        default=[],
        metavar="PATH",
        help="more files or directories holding the Secrets the objects reference",
    )
    p.add_argument(
        "-n",
        "--namespace",
        default="default",
        help="namespace of objects that name none (default: %(default)s)",
    )


def build_parser(role_names: Sequence[str] = tuple(ROLES)) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="switchboard", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"switchboard {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("crds", help="print the CustomResourceDefinitions (or write them)")
    p.add_argument("--out", type=Path, help="write one file per kind into this directory")
    p.add_argument("--helm-out", type=Path, help="also copy them into this directory")

    p = sub.add_parser("render", help="compile manifests and print each namespace's routing config")
    _add_source_args(p)
    p.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml")
    p.add_argument(
        "--show-secrets",
        action="store_true",
        help="print provider keys instead of <redacted> (never share that output)",
    )

    p = sub.add_parser("validate", help="compile manifests and report problems; exit 1 if any")
    _add_source_args(p)
    p.add_argument(
        "--format",
        choices=("text", "github"),
        default="text",
        help="github: workflow annotations (::error file=...::)",
    )
    p.add_argument("--strict", action="store_true", help="treat warnings as problems too")

    p = sub.add_parser("probe", help="tell which of the three APIs a model server answers")
    probe.add_arguments(p)

    for name in role_names:
        module, help_text = ROLES[name]
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(role_module=module)
        _role(module).add_arguments(p)
    return parser


def _role(module: str) -> Role:
    return cast(Role, importlib.import_module(module))


def _available_roles(argv: Sequence[str]) -> list[str]:
    """Import only the role being run (or all of them for --help)."""
    wanted = [a for a in argv if a in ROLES]
    names = wanted[:1] if wanted else list(ROLES)
    available = []
    for name in names:
        try:
            importlib.import_module(ROLES[name][0])
        except ModuleNotFoundError:
            continue
        available.append(name)
    return available


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(_available_roles(argv)).parse_args(argv)
    if args.command == "crds":
        return _crds(args)
    if args.command in ("render", "validate"):
        return _offline(args)
    if args.command == "probe":
        return probe.run(args)
    return _role(args.role_module).run(args)


def _crds(args: argparse.Namespace) -> int:
    files = crdgen.render_all()
    if args.out is None and args.helm_out is None:
        sys.stdout.write(crdgen.render_stream())
        return 0
    for directory in (d for d in (args.out, args.helm_out) if d is not None):
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (directory / name).write_text(text, encoding="utf-8")
        print(f"wrote {len(files)} CRDs to {directory}", file=sys.stderr)
    return 0


def _load(args: argparse.Namespace) -> manifests.Loaded:
    loaded = manifests.load(args.paths, args.namespace)
    if args.secrets:
        extra = manifests.load(args.secrets, args.namespace)
        loaded.secrets.update(extra.secrets)
        loaded.unlabeled.difference_update(extra.secrets)
        loaded.unlabeled.update(k for k in extra.unlabeled if k not in loaded.secrets)
        loaded.errors.extend(extra.errors)
    return loaded


def _offline(args: argparse.Namespace) -> int:
    try:
        loaded = _load(args)
    except FileNotFoundError as exc:
        print(f"switchboard {args.command}: {exc}", file=sys.stderr)
        return 2
    result = loaded.compile(args.namespace)
    sources = loaded.sources(args.namespace)
    lines: list[tuple[str, str, str]] = [("error", line, "") for line in loaded.errors]
    for problem in result.problems:
        if (
            args.command == "render"
            or problem.severity is Severity.ERROR
            or problem.reason is Reason.BUDGET_WITHOUT_PRICES  # "this budget never fires"
            or getattr(args, "strict", False)
        ):
            ref = problem.ref
            source = sources.get((ref.kind, ref.namespace, ref.name), "<input>")
            lines.append((problem.severity.value, f"{source}: {problem}", source))

    if args.command == "validate":
        for severity, line, source in lines:
            if args.format == "github":
                file_name = (source or line.split(":", 1)[0]).split("#", 1)[0]
                message = line.replace("%", "%25").replace("\n", "%0A")
                print(f"::{severity} file={file_name}::{message}")
            else:
                print(line if severity == "error" else f"{line} (warning)")
        failed = any(severity == "error" for severity, _, _ in lines) or (args.strict and lines)
        counted = len(loaded.objects)
        print(
            f"{counted} objects, {len(result.configs)} namespaces: "
            + (f"{len(lines)} problems" if lines else "no problems"),
            file=sys.stderr,
        )
        return 1 if failed else 0

    for severity, line, _ in lines:
        print(f"{severity}: {line}", file=sys.stderr)
    configs = list(result.configs.values())
    if not args.show_secrets:
        configs = [rc.redacted(c) for c in configs]
    if args.output == "json":
        payload: Any = [orjson.loads(rc.to_json(c)) for c in configs]
        sys.stdout.write(
            orjson.dumps(
                payload[0] if len(payload) == 1 else payload,
                option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS,
            ).decode()
            + "\n"
        )
    else:
        sys.stdout.write(
            yaml.safe_dump_all(
                [orjson.loads(rc.to_json(c)) for c in configs], sort_keys=True, width=100
            )
        )
    return 1 if loaded.errors else 0


if __name__ == "__main__":
    sys.exit(main())
