"""Check what a Pulumi program registers against AWS's own API models, before any
``pulumi up``: each input of each resource against the API member it becomes.

Pulumi's mocks accept any value, so a wrong enum, an out-of-range timeout or a
malformed schedule would pass every test and fail minutes into a deployment.
botocore ships every service's model (the rules each API enforces: types,
enums, minimum and maximum, patterns, lengths, required members), and this
module holds each registered input to them::

    from channel_server.mocks import deploy
    from channel_server.api_models import check_deployment

    findings = check_deployment(deploy(lambda: ChannelServer("chat")))
    assert not findings, "\\n".join(map(str, findings))

:data:`~channel_server.api_model_table.RESOURCES` is the one table: for each resource type the component
registers, the API call that creates it and, for each pulumi-aws property, the
member of that call it becomes (or why it becomes none). A property the table
does not map, and a resource type it does not know, are findings too, so nothing
new slips past unchecked. :data:`~channel_server.api_model_rules.DOCUMENTED_RULES` adds the few rules that AWS
documents but its models do not encode (a WebSocket integration's 29-second
timeout, log retention's allowed values, a schedule's rate units, Lambda's
timeout); each says where it is written. Policy documents are parsed
and each action is looked up in its service's model.

It needs botocore (the ``check`` extra). ``python -m channel_server.api_models``
checks a Pulumi project's stack the same way.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from .api_model_rules import DOCUMENTED_RULES, Context, integral, member_shape, model, policy_problems
from .api_model_table import AUTO_NAMED, COMMON, RESOURCES, Attribute, Entries, Member, NotSent, Resource, Target

if TYPE_CHECKING:
    from botocore.model import Shape

    from .mocks import Deployment, Registered


# --- the check ----------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One input that breaks a rule: which resource, which property, its value,
    and the rule with its source."""

    type: str
    resource: str
    property: str
    value: Any
    rule: str

    def __str__(self) -> str:
        # Pulumi sends every number as a float: 10, not 10.0, as the program wrote it
        shown = int(self.value) if isinstance(self.value, float) and self.value.is_integer() else self.value
        value = repr(shown)
        value = value if len(value) <= 120 else value[:117] + "..."
        return f"{self.type} {self.resource!r}: {self.property} = {value}: {self.rule}"


def check_deployment(deployment: "Deployment", resources: Iterable["Registered"] | None = None) -> list[Finding]:
    """Every finding for ``resources`` (by default every AWS resource ``deployment``
    registered; pass ``deployment.descendants(urn)`` for one component's): an
    empty list when each input keeps its API member's rules."""
    chosen = [r for r in deployment.resources if r.type.startswith("aws:")] if resources is None else list(resources)
    findings: list[Finding] = []
    for resource in chosen:
        findings.extend(check_resource(resource, deployment))
    return findings


def check_resource(resource: "Registered", deployment: "Deployment") -> list[Finding]:
    """The findings for one registered resource."""
    spec = RESOURCES.get(resource.type)
    if spec is None:
        return [Finding(resource.type, resource.name, "(type)", resource.type,
                        "no API mapping for this resource type in channel_server.api_model_table.RESOURCES")]
    checker = _Checker(resource, deployment, spec)
    for name, value in resource.inputs.items():
        checker.walk(value, name)
    checker.auto_named()
    checker.required()
    return checker.findings


class _Checker:
    def __init__(self, resource: "Registered", deployment: "Deployment", spec: Resource):
        self.resource, self.spec = resource, spec
        self.context = Context(resource, deployment)
        self.findings: list[Finding] = []
        self.hits: set[str] = set()

    def fail(self, path: str, value: Any, rule: str) -> None:
        self.findings.append(Finding(self.resource.type, self.resource.name, path, value, rule))

    def walk(self, value: Any, path: str) -> None:
        target = self.spec.properties.get(path, COMMON.get(path))
        if target is not None:
            self.apply(target, value, path)
        elif value in ({}, []) and any(key.startswith((path + ".", path + "[]")) for key in self.spec.properties):
            return  # an empty object or list whose members are mapped: nothing to send
        elif isinstance(value, dict) and value:
            for key, item in value.items():
                self.walk(item, f"{path}.{key}")
        elif isinstance(value, list) and value:
            for item in value:
                self.walk(item, path + "[]")
        else:
            self.fail(path, value, f"not mapped to a member of {self.spec.service} {self.spec.operation} "
                                   "in channel_server.api_model_table.RESOURCES")

    def apply(self, target: Target, value: Any, path: str) -> None:
        spec = self.spec
        if isinstance(target, NotSent):
            return
        if isinstance(target, Member):
            operation = target.operation or spec.operation
            if target.operation is None and target.shape is None:
                self.hits.add(target.path)
            where = f"{spec.service} {target.shape or operation}.{target.path}"
            shape = member_shape(spec.service, operation, target.path, target.shape)
            for problem in _shape_problems(value, shape):
                self.fail(path, value, f"{where}: {problem} (botocore's {spec.service} model)")
            if target.policy:
                for problem in policy_problems(value):
                    self.fail(path, value, f"{where}: policy document {problem}")
            self.documented(spec.service, operation, target.path, path, value)
        elif isinstance(target, Entries):
            self.hits.update((target.key, target.value))
            for key, item in dict(value).items():
                for member, part in ((target.key, key), (target.value, item)):
                    shape = member_shape(spec.service, spec.operation, member, None)
                    for problem in _shape_problems(part, shape):
                        self.fail(f"{path}.{key}", part,
                                  f"{spec.service} {spec.operation}.{member}: {problem} (botocore's model)")
        elif isinstance(target, Attribute):
            self.hits.add(target.map)
            shape = member_shape(spec.service, spec.operation, target.map, None)
            keys = shape.key.enum  # SQS lists its attributes; SNS's map takes any name
            if keys and target.key not in keys:
                self.fail(path, value, f"{spec.service} {spec.operation}.{target.map}: no attribute {target.key!r}")
            member = f"{target.map}{{{target.key}}}"
            if target.json:
                try:
                    parsed = json.loads(value) if isinstance(value, str) else value
                except ValueError as error:
                    self.fail(path, value, f"{spec.service} {spec.operation}.{member}: not valid JSON ({error})")
                    return
                self.documented(spec.service, spec.operation, member, path, parsed, shown=value)
            else:
                self.documented(spec.service, spec.operation, member, path, value)

    def documented(self, service: str, operation: str, member: str, path: str, value: Any,
                   shown: Any = None) -> None:
        """Apply the documented rules for ``member`` to ``value`` (a finding shows
        ``shown``, the value as registered, when it differs: a JSON string)."""
        for rule in DOCUMENTED_RULES.get((service, operation, member), ()):
            if not rule.applies(self.context):
                continue
            try:
                kept = rule.test(value, self.context)
            except (TypeError, ValueError):
                kept = False
            if not kept:
                source = f"the model's documentation of {operation}.{member}" if rule.source == "model" \
                    else rule.source
                says = rule.says if rule.values is None else f"{rule.says}: {', '.join(map(str, rule.values()))}"
                self.fail(path, value if shown is None else shown,
                          f"{service} {operation}.{member}: {says} (documented: {source})")

    def auto_named(self) -> None:
        """The name the provider gives a resource that has none of its own, as the
        mocks compute it (its Pulumi name, ``-`` and 7 random characters; a
        prefix and 26): held to the rules of the member it fills, so that a
        component name too long for its children is found here, not in ``pulumi up``."""
        name = self.resource.outputs.get("name")
        if not isinstance(name, str) or "name" in self.resource.inputs:
            return
        for member, who in self.spec.filled.items():
            if who == AUTO_NAMED:
                self.apply(Member(member), name, "name (auto-named from the Pulumi name)")

    def required(self) -> None:
        """Required members of the call's input that no property set: at the top,
        and in each structure a property reaches."""
        shape = model(self.spec.service).operation_model(self.spec.operation).input_shape
        for member in _missing(shape, "", self.hits, set(self.spec.filled)):
            self.fail(member, None, f"{self.spec.service} {self.spec.operation}.{member} is required, "
                                    "and no property sets it")


def _missing(shape: "Shape", prefix: str, hits: set[str], filled: set[str]) -> list[str]:
    reached = hits | filled

    def touched(path: str) -> bool:
        return any(hit == path or hit.startswith((path + ".", path + "[]", path + "{")) for hit in reached)

    missing = []
    members = getattr(shape, "members", {})
    for name in getattr(shape, "required_members", []):
        if not touched(prefix + name):
            missing.append(prefix + name)
    for name, member in members.items():
        path = prefix + name
        if not touched(path):
            continue
        while member.type_name == "list":
            member, path = member.member, path + "[]"
        if member.type_name == "structure":
            missing.extend(_missing(member, path + ".", hits, filled))
    return missing


# --- the shapes ----------------------------------------------------------------------


@functools.cache
def _pattern(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:  # a Java construct Python's re lacks (\p{...}): not checked
        return None


def _shape_problems(value: Any, shape: "Shape") -> list[str]:
    """What keeps ``value`` from being a valid ``shape``: its type, enum, range,
    length and pattern, through lists and maps."""
    kind, meta = shape.type_name, shape.metadata
    if kind == "blob" or value is None:
        return []
    if kind == "string":
        if not isinstance(value, str):
            return [f"a {type(value).__name__}, not a string"]
        problems = []
        enum = getattr(shape, "enum", None)
        if enum and value not in enum:
            problems.append(f"not one of {', '.join(enum)}")
        if "min" in meta and len(value) < meta["min"]:
            problems.append(f"shorter than {meta['min']} characters")
        if "max" in meta and len(value) > meta["max"]:
            problems.append(f"longer than {meta['max']} characters")
        pattern = _pattern(meta["pattern"]) if "pattern" in meta else None
        if pattern is not None and not pattern.fullmatch(value):
            problems.append(f"does not match the pattern {meta['pattern']}")
        return problems
    if kind in ("integer", "long"):
        if not integral(value) or isinstance(value, str):
            return [f"{value!r} is not an integer"]
        return _range(int(value), meta)
    if kind in ("double", "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return [f"{value!r} is not a number"]
        return _range(value, meta)
    if kind == "boolean":
        return [] if isinstance(value, bool) else [f"{value!r} is not a boolean"]
    if kind == "list":
        if not isinstance(value, list):
            return [f"a {type(value).__name__}, not a list"]
        problems = _count(len(value), meta, "items")
        for item in value:
            problems.extend(_shape_problems(item, shape.member))
        return problems
    if kind == "map":
        if not isinstance(value, dict):
            return [f"a {type(value).__name__}, not a map"]
        problems = _count(len(value), meta, "entries")
        for key, item in value.items():
            problems.extend(f"key {key!r}: {p}" for p in _shape_problems(key, shape.key))
            problems.extend(f"[{key!r}]: {p}" for p in _shape_problems(item, shape.value))
        return problems
    return []


def _range(value: float, meta: Mapping[str, Any]) -> list[str]:
    if "min" in meta and value < meta["min"]:
        return [f"below the minimum {meta['min']}"]
    if "max" in meta and value > meta["max"]:
        return [f"above the maximum {meta['max']}"]
    return []


def _count(count: int, meta: Mapping[str, Any], what: str) -> list[str]:
    if "min" in meta and count < meta["min"]:
        return [f"fewer than {meta['min']} {what}"]
    if "max" in meta and count > meta["max"]:
        return [f"more than {meta['max']} {what}"]
    return []


# --- the command ----------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``python -m channel_server.api_models [PROJECT] [--stack NAME]``: run a
    Pulumi project under the mocks with a stack's config, as ``pulumi up`` would,
    and print every finding; exit 1 when there is one, 2 when the project (or
    botocore) is missing or its program fails."""
    import argparse
    import importlib.util

    from .extras import install_command
    from .mocks import Project, ProjectError

    parser = argparse.ArgumentParser(
        prog="python -m channel_server.api_models",
        description="Check every AWS resource a Pulumi program registers against AWS's API models "
                    "(botocore's), under Pulumi's mocks: no Pulumi CLI, no AWS account.")
    parser.add_argument("project", nargs="?", default=".",
                        help="the project's folder, its Pulumi.yaml or its program (default: this folder)")
    parser.add_argument("--stack", default="dev",
                        help="the stack whose Pulumi.NAME.yaml config the program gets (default: dev)")
    options = parser.parse_args(argv)
    if importlib.util.find_spec("botocore") is None:
        parser.exit(2, f"{parser.prog} reads botocore's API models: {install_command('check')}\n")
    import botocore

    try:
        project = Project.load(options.project)
        # as `pulumi up` does, only a stack that exists: its file, not Pulumi.yaml's defaults alone
        deployment = project.deploy(options.stack, required=True)
    except ProjectError as error:
        parser.exit(2, f"{parser.prog}: {error}\n")
    except Exception as error:  # the program's own error (a ChannelServerArgsError): what pulumi up would say
        parser.exit(2, f"{parser.prog}: the program failed under Pulumi's mocks: {type(error).__name__}: {error}\n")
    resources = [r for r in deployment.resources if r.type.startswith("aws:")]
    findings = check_deployment(deployment, resources)
    for finding in sorted(findings, key=lambda f: (f.type, f.resource, f.property)):
        print(finding)
    types = len({r.type for r in resources})
    print(f"{project.name} ({options.stack}): {len(resources)} resources of {types} types checked against "
          f"botocore {botocore.__version__}'s API models: "
          f"{len(findings) or 'no'} finding{'' if len(findings) == 1 else 's'}")
    return 1 if findings else 0


if __name__ == "__main__":
    raise SystemExit(main())
