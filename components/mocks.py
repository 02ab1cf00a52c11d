"""Run a Pulumi program under Pulumi's mock engine and see what it registered.

``deploy(program)`` runs ``program`` (any callable that creates resources, such
as ``lambda: ChannelServer("chat")`` or a whole ``__main__.py``) with
:class:`AwsMocks`, waits until every resource has registered and returns a
:class:`Deployment`: each resource's type, name, inputs (as the provider would
receive them: camelCase keys, resolved values, assets as ``pulumi.Asset`` /
``pulumi.Archive`` objects) and the AWS-shaped outputs the mocks computed,
plus the stack's exports, resolved.

``Project.load(path)`` reads a Pulumi project on disk (``Pulumi.yaml``, its
program, a stack's ``Pulumi.<stack>.yaml``) so that ``project.deploy(stack)``
runs the program with the config ``pulumi up`` would give it.

The tests use it to assert the component's resources; local mode uses it to
build its world from what the component declares. Outputs are deterministic:
the same program gives the same ids, names and ARNs on every run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import inspect
import runpy
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import pulumi

from . import resource_types
from .local.placeholders import ACCOUNT
from .local.placeholders import REGION as DEFAULT_REGION


def _suffix(name: str, length: int = 7) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:length]


@dataclass(frozen=True)
class Registered:
    """One resource as the mock engine saw it."""

    type: str
    name: str
    id: str
    inputs: Mapping[str, Any]
    outputs: Mapping[str, Any]
    urn: str = ""
    """``urn:pulumi:{stack}::{project}::{parent types$}{type}::{name}``: the parent
    chain shows which component a resource was created under."""
    parent: str = ""
    """The URN of the resource's parent (the stack's for top-level resources)."""
    protect: bool = False
    """The ``protect`` resource option, as the engine received it."""
    retain_on_delete: bool = False
    """The ``retain_on_delete`` resource option, as the engine received it."""

    def __getitem__(self, key: str) -> Any:
        """An output (inputs included) by its wire name, e.g. ``table["hashKey"]``."""
        return self.outputs[key]

    def get(self, key: str, default: Any = None) -> Any:
        """An output by its wire name, or ``default``."""
        return self.outputs.get(key, default)


@dataclass
class Deployment:
    """Everything one mocked run registered, in registration order."""

    resources: list[Registered] = field(default_factory=list)
    exports: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    #: The config keys (qualified, ``project:key``) the program asked for, set or not.
    config_read: set[str] = field(default_factory=set)

    def of_type(self, type_token: str) -> list[Registered]:
        """Every resource of one type (``"aws:lambda/function:Function"``), in order."""
        return [r for r in self.resources if r.type == type_token]

    def one(self, type_token: str) -> Registered:
        """The only resource of a type; LookupError when there are none or several."""
        found = self.of_type(type_token)
        if len(found) != 1:
            raise LookupError(f"expected one {type_token}, found {len(found)}")
        return found[0]

    def by_id(self, resource_id: str, type_token: str | None = None) -> Registered:
        """The resource with this id (of this type, when given: ids repeat across types)."""
        for resource in self.resources:
            if resource.id == resource_id and type_token in (None, resource.type):
                return resource
        raise LookupError(f"no {type_token or 'resource'} with id {resource_id!r}")

    def descendants(self, urn: str) -> list[Registered]:
        """Every resource created under the resource ``urn`` (children, their
        children, …), in registration order."""
        below = {urn}
        found = []
        for resource in self.resources:  # a parent always registers before its children
            if resource.parent in below:
                below.add(resource.urn)
                found.append(resource)
        return found

    def by_name(self, name: str) -> Registered:
        """The first resource with this Pulumi name (names repeat across types)."""
        for resource in self.resources:
            if resource.name == name:
                return resource
        raise LookupError(f"no resource named {name!r}")


class AwsMocks(pulumi.runtime.Mocks):
    """Mocks that answer like AWS: every computed output the channel server (or
    code reading it) uses, in AWS's shapes, derived deterministically from the
    resource's name and inputs."""

    def __init__(self, region: str = DEFAULT_REGION, account: str = ACCOUNT):
        self.region = region
        self.account = account
        self.registered: list[Registered] = []
        #: Each registered resource's own ``transforms`` and its parent's URN,
        #: by URN: the engine runs a resource's transforms, then its parent's,
        #: up to the stack (Pulumi's mock monitor runs none; see new_resource).
        self.transforms: dict[str, tuple[list[pulumi.ResourceTransform], str]] = {}
        self._registering = threading.local()

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self._registering.own_transforms = list(args.transforms)
        inputs = self._transformed(args)
        outputs = dict(inputs)
        resource_id = f"{args.name}-{_suffix(args.typ + args.name)}"
        compute = self._COMPUTED.get(args.typ)
        if compute is not None:
            resource_id = compute(self, args, outputs) or resource_id
        outputs.setdefault("arn", f"arn:aws:mock:{self.region}:{self.account}:{args.typ}/{resource_id}")
        self.registered.append(Registered(args.typ, args.name, resource_id, inputs, outputs))
        return resource_id, outputs

    def _transformed(self, args: pulumi.runtime.MockResourceArgs) -> dict[str, Any]:
        """The inputs after the transforms the engine would run: the resource's
        own, then each ancestor's, nearest first. Only ``props`` are taken from
        a transform's result (options are the engine's business)."""
        from pulumi.runtime.sync_await import _sync_await

        chain = list(args.transforms)
        parent = getattr(self._registering, "parent", "")
        while parent in self.transforms:
            own, parent = self.transforms[parent]
            chain.extend(own)
        props = dict(args.inputs)
        for transform in chain:
            result = transform(pulumi.ResourceTransformArgs(
                custom=bool(args.custom), type_=args.typ, name=args.name, props=props, opts=pulumi.ResourceOptions()))
            if inspect.isawaitable(result):
                result = _sync_await(result)
            if result is not None:
                props = dict(result.props)
        return props

    # A dict alone: pulumi's engine takes one as the outputs (mocks.py checks
    # isinstance(tup, dict)), while its annotation asks for (outputs, failures).
    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:  # type: ignore[override]
        if args.token == "aws:index/getRegion:getRegion":
            return {"name": self.region, "region": self.region, "id": self.region}
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": self.account, "arn": f"arn:aws:iam::{self.account}:user/mock", "userId": "mock"}
        return {}

    # --- AWS-shaped computed outputs, by resource type ------------------------------------

    def _auto_name(self, args: Any, outputs: dict[str, Any]) -> str:
        if outputs.get("name"):
            return str(outputs["name"])
        prefix = outputs.get("namePrefix")
        name = f"{prefix}{_suffix(args.name, 26)}" if prefix else f"{args.name}-{_suffix(args.name)}"
        outputs["name"] = name
        return name

    def _table(self, args: Any, outputs: dict[str, Any]) -> str:
        name = self._auto_name(args, outputs)
        outputs["arn"] = f"arn:aws:dynamodb:{self.region}:{self.account}:table/{name}"
        outputs["streamArn"] = ""
        return name

    def _api(self, args: Any, outputs: dict[str, Any]) -> str:
        api_id = _suffix(args.name, 10)
        outputs["apiEndpoint"] = f"wss://{api_id}.execute-api.{self.region}.amazonaws.com"
        outputs["executionArn"] = f"arn:aws:execute-api:{self.region}:{self.account}:{api_id}"
        outputs["arn"] = f"arn:aws:apigateway:{self.region}::/apis/{api_id}"
        return api_id

    def _stage(self, args: Any, outputs: dict[str, Any]) -> str:
        api_id, stage = outputs.get("apiId", ""), str(outputs.get("name", ""))
        outputs["invokeUrl"] = f"wss://{api_id}.execute-api.{self.region}.amazonaws.com/{stage}"
        outputs["executionArn"] = f"arn:aws:execute-api:{self.region}:{self.account}:{api_id}/{stage}"
        return stage

    def _function(self, args: Any, outputs: dict[str, Any]) -> str:
        name = self._auto_name(args, outputs)
        arn = f"arn:aws:lambda:{self.region}:{self.account}:function:{name}"
        outputs["arn"] = arn
        outputs["invokeArn"] = resource_types.lambda_invoke_uri(arn)
        outputs["qualifiedArn"] = f"{arn}:$LATEST"
        return name

    def _role(self, args: Any, outputs: dict[str, Any]) -> str:
        name = self._auto_name(args, outputs)
        outputs["arn"] = f"arn:aws:iam::{self.account}:role/{name}"
        return name

    def _log_group(self, args: Any, outputs: dict[str, Any]) -> str:
        name = self._auto_name(args, outputs)
        outputs["arn"] = f"arn:aws:logs:{self.region}:{self.account}:log-group:{name}"
        return name

    def _queue(self, args: Any, outputs: dict[str, Any]) -> str:
        name = self._auto_name(args, outputs)
        outputs["arn"] = f"arn:aws:sqs:{self.region}:{self.account}:{name}"
        url = outputs["url"] = f"https://sqs.{self.region}.amazonaws.com/{self.account}/{name}"
        return url  # a queue's id is its URL

    def _schedule(self, args: Any, outputs: dict[str, Any]) -> str:
        name = self._auto_name(args, outputs)
        group = outputs.get("groupName") or "default"
        outputs["arn"] = f"arn:aws:scheduler:{self.region}:{self.account}:schedule/{group}/{name}"
        return f"{group}/{name}"  # a schedule's id is group/name

    def _short_id(self, args: Any, outputs: dict[str, Any]) -> str:
        return _suffix(args.typ + args.name)

    def _domain_name(self, args: Any, outputs: dict[str, Any]) -> str:
        name = str(outputs.get("domainName", ""))
        configuration = dict(outputs.get("domainNameConfiguration") or {})
        configuration["targetDomainName"] = f"d-{_suffix(name, 10)}.execute-api.{self.region}.amazonaws.com"
        configuration["hostedZoneId"] = "Z1UJRXOUMOOFQ8"  # API Gateway's regional zone (us-east-1)
        outputs["domainNameConfiguration"] = configuration
        outputs["apiMappingSelectionExpression"] = "$request.basepath"
        outputs["arn"] = f"arn:aws:apigateway:{self.region}::/domainnames/{name}"
        return name  # a domain name's id is the name

    def _certificate(self, args: Any, outputs: dict[str, Any]) -> str:
        certificate_id = f"{_suffix(args.name, 8)}-{_suffix(args.name + '-', 4)}"
        arn = outputs["arn"] = f"arn:aws:acm:{self.region}:{self.account}:certificate/{certificate_id}"
        return arn  # a certificate's id is its ARN

    def _topic(self, args: Any, outputs: dict[str, Any]) -> str:
        name = self._auto_name(args, outputs)
        arn = outputs["arn"] = f"arn:aws:sns:{self.region}:{self.account}:{name}"
        return arn  # a topic's id is its ARN

    def _zone(self, args: Any, outputs: dict[str, Any]) -> str:
        zone_id = outputs["zoneId"] = "Z" + _suffix(args.name, 20).upper()
        outputs["arn"] = f"arn:aws:route53:::hostedzone/{zone_id}"
        return zone_id

    def _alarm(self, args: Any, outputs: dict[str, Any]) -> str:
        name = self._auto_name(args, outputs)
        outputs["arn"] = f"arn:aws:cloudwatch:{self.region}:{self.account}:alarm:{name}"
        return name

    def _function_url(self, args: Any, outputs: dict[str, Any]) -> str:
        url_id = _suffix(args.name, 32)
        outputs["urlId"] = url_id
        outputs["functionUrl"] = f"https://{url_id}.lambda-url.{self.region}.on.aws/"
        return str(outputs.get("functionName", ""))  # a function URL's id is its function's name

    def _policy(self, args: Any, outputs: dict[str, Any]) -> str:
        name = self._auto_name(args, outputs)
        path = outputs.get("path") or ""
        arn = outputs["arn"] = f"arn:aws:iam::{self.account}:policy/{path}{name}".replace("//", "/")
        outputs["policyId"] = "ANPA" + _suffix(args.name, 17).upper()
        return arn  # a managed policy's id is its ARN

    def _record(self, args: Any, outputs: dict[str, Any]) -> str:
        outputs["fqdn"] = outputs.get("name", "")
        return f"{outputs.get('zoneId', '')}_{outputs.get('name', '')}_{outputs.get('type', '')}"

    _COMPUTED: dict[str, Callable[["AwsMocks", Any, dict[str, Any]], str]] = {
        resource_types.TABLE: _table,
        resource_types.API: _api,
        resource_types.STAGE: _stage,
        resource_types.DEPLOYMENT: _short_id,
        resource_types.INTEGRATION: _short_id,
        resource_types.ROUTE: _short_id,
        resource_types.ROUTE_RESPONSE: _short_id,
        resource_types.INTEGRATION_RESPONSE: _short_id,
        resource_types.SCHEDULE: _schedule,
        resource_types.FUNCTION: _function,
        resource_types.ROLE: _role,
        resource_types.LOG_GROUP: _log_group,
        resource_types.QUEUE: _queue,
        resource_types.MAPPING: _short_id,
        resource_types.AUTHORIZER: _short_id,
        resource_types.DOMAIN_NAME: _domain_name,
        resource_types.API_MAPPING: _short_id,
        resource_types.RECORD: _record,
        resource_types.ALARM: _alarm,
        resource_types.API_GATEWAY_ACCOUNT: _short_id,
        resource_types.CERTIFICATE: _certificate,
        resource_types.TOPIC: _topic,
        resource_types.ZONE: _zone,
        resource_types.FUNCTION_URL: _function_url,
        resource_types.MANAGED_POLICY: _policy,
    }


#: What a secret config value becomes: the mock engine has no key to decrypt it.
SECRET_PLACEHOLDER = "local-placeholder-for-a-secret"


class ProjectError(Exception):
    """A Pulumi project on disk could not be read; the message says why."""


@dataclass(frozen=True)
class Project:
    """A Pulumi project on disk: ``Pulumi.yaml``, the program it runs and its
    stacks' config files."""

    name: str
    directory: Path
    """The folder holding ``Pulumi.yaml`` (and the stack files)."""
    program: Path
    """The program file: ``__main__.py`` in the project's ``main`` folder."""
    defaults: Mapping[str, Any]
    """Config declared in ``Pulumi.yaml``, by fully qualified key (``project:key``)."""
    declared: frozenset[str] = frozenset()
    """Every key ``Pulumi.yaml`` declares, with or without a value, fully qualified."""

    @classmethod
    def load(cls, path: str | Path) -> "Project":
        """The project at ``path``: its folder, its ``Pulumi.yaml`` or its program
        file (whose folder, or the nearest one above it, holds ``Pulumi.yaml``)."""
        import yaml

        path = Path(path).resolve()
        if not path.exists():
            raise ProjectError(f"{path} does not exist")
        start = path if path.is_dir() else path.parent
        directory = next((d for d in (start, *start.parents) if (d / "Pulumi.yaml").is_file()), None)
        if directory is None:
            raise ProjectError(f"no Pulumi.yaml in {start} or any folder above it")
        try:
            settings = yaml.safe_load((directory / "Pulumi.yaml").read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ProjectError(f"{directory / 'Pulumi.yaml'} is not valid YAML: {exc}") from None
        name = settings.get("name")
        if not isinstance(name, str) or not name:
            raise ProjectError(f"{directory / 'Pulumi.yaml'} has no project name")
        if path.is_file() and path.name != "Pulumi.yaml":
            program = path
        else:
            program = (directory / str(settings.get("main") or ".")).resolve()
            if program.is_dir():
                program = program / "__main__.py"
        if not program.is_file():
            raise ProjectError(f"the program of project {name} is not there: {program}")
        defaults: dict[str, Any] = {}
        keys = frozenset(_qualified(name, key) for key in (settings.get("config") or {}))
        for key, declared in (settings.get("config") or {}).items():
            if isinstance(declared, dict):
                if "value" in declared:
                    declared = declared["value"]
                elif "default" in declared:
                    declared = declared["default"]
                else:
                    continue  # declared without a value: the stack must set it
            defaults[_qualified(name, key)] = declared
        return cls(name, directory, program, defaults, keys)

    def config(self, stack: str, *, required: bool = False) -> tuple[dict[str, Any], list[str]]:
        """The config a program of ``stack`` sees: ``Pulumi.yaml``'s values
        overlaid with ``Pulumi.<stack>.yaml``'s (when the file exists, or
        ``required``), and the keys of secrets, which get
        :data:`SECRET_PLACEHOLDER` because nothing here can decrypt them."""
        import yaml

        values = dict(self.defaults)
        secrets: list[str] = []
        stack_file = self.directory / f"Pulumi.{stack}.yaml"
        if not stack_file.is_file():
            if required:
                raise ProjectError(self._missing_stack(stack))
            return values, secrets
        try:
            settings = yaml.safe_load(stack_file.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ProjectError(f"{stack_file} is not valid YAML: {exc}") from None
        for key, value in (settings.get("config") or {}).items():
            key = _qualified(self.name, key)
            if isinstance(value, dict) and set(value) == {"secure"}:
                secrets.append(key)
                value = SECRET_PLACEHOLDER
            values[key] = value
        return values, secrets

    def stacks(self) -> list[str]:
        """The stacks that have a config file here (``Pulumi.<stack>.yaml``), by name."""
        return sorted(path.name[len("Pulumi."):-len(".yaml")] for path in self.directory.glob("Pulumi.?*.yaml"))

    def _missing_stack(self, stack: str) -> str:
        stack_file = self.directory / f"Pulumi.{stack}.yaml"
        found = self.stacks()
        text = f"stack {stack} has no config file: {stack_file} does not exist; "
        text += f"the stacks here are {', '.join(found)}" if found else "this project has no stack files"
        example = stack_file.with_name(stack_file.name + ".example")
        if example.is_file():
            text += f"; {example.name} is an example to start from: cp {example.name} {stack_file.name}"
        return text

    def deploy(self, stack: str = "dev", *, required: bool = False,
               overrides: Mapping[str, Any] | None = None) -> Deployment:
        """Run the program under the mocks with ``stack``'s config (see
        :meth:`config`), and ``overrides`` over it (keys as in a stack file: a
        key without a namespace is the project's), as ``pulumi up --config``
        would give it."""
        values, _ = self.config(stack, required=required)
        values.update({_qualified(self.name, key): value for key, value in (overrides or {}).items()})
        return deploy(self.program, project=self.name, stack=stack, config=values)


class _ReadingConfig(dict[str, Any]):
    """The runtime's config map, noting each key asked for (``key in config``,
    as ``pulumi.runtime.config.get_config`` asks, or ``config[key]``)."""

    def __init__(self, values: Mapping[str, Any], read: set[str]):
        super().__init__(values)
        self._read = read

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self._read.add(key)
        return super().__contains__(key)

    def __getitem__(self, key: str) -> Any:
        self._read.add(key)
        return super().__getitem__(key)


def _qualified(project: str, key: str) -> str:
    return key if ":" in key else f"{project}:{key}"


def deploy(
    program: Callable[[], Any] | str | Path,
    *,
    project: str = "channel-server",
    stack: str = "dev",
    config: Mapping[str, Any] | None = None,
    region: str | None = None,
) -> Deployment:
    """Run ``program`` under :class:`AwsMocks` and return what it registered.

    ``program`` is a callable or the path of a Pulumi program file (run as
    ``__main__``). ``config`` holds fully qualified keys
    (``{"channel-server:stageName": "prod", "aws:region": "eu-west-1"}``); objects
    are passed as JSON strings, as the Pulumi CLI does.
    """
    import json

    try:
        asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:  # e.g. after asyncio.run() on this thread: Pulumi's runtime needs one
        asyncio.set_event_loop(asyncio.new_event_loop())
    values = {key: value if isinstance(value, str) else json.dumps(value) for key, value in (config or {}).items()}
    pulumi.runtime.set_all_config(values)
    deployment = Deployment()
    # what the program reads: pulumi.Config asks the runtime's config map for each key
    pulumi.runtime.config.CONFIG.set(_ReadingConfig(pulumi.runtime.config.CONFIG.get(), deployment.config_read))
    mocks = AwsMocks(region=region or values.get("aws:region") or DEFAULT_REGION)
    deployment.config_read.add("aws:region")  # read here, as the AWS provider reads it under `pulumi up`
    # a fresh root stack, so no exports of an earlier run in this process leak in
    pulumi.runtime.settings.ROOT.set(None)
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=False)
    monitor = pulumi.runtime.settings.SETTINGS.monitor
    # the mock monitor computes each URN from the request's parent but keeps
    # neither: note both, so a Deployment can tell whose child a resource is
    placed: dict[tuple[str, str], tuple[str, str, bool, bool]] = {}
    register = monitor.RegisterResource

    def register_and_place(request: Any) -> Any:
        mocks._registering.parent, mocks._registering.own_transforms = request.parent, []
        response = register(request)
        placed[(request.type, request.name)] = (response.urn, request.parent, request.protect, request.retainOnDelete)
        mocks.transforms[response.urn] = (mocks._registering.own_transforms, request.parent)
        return response

    monitor.RegisterResource = register_and_place

    def body() -> Any:
        if callable(program):
            deployment.result = program()
        else:
            # as under `pulumi up`, the program imports modules beside it
            folder = str(Path(program).resolve().parent)
            sys.path.insert(0, folder)
            try:
                runpy.run_path(str(program), run_name="__main__")
            finally:
                sys.path.remove(folder)
        root = pulumi.runtime.get_root_resource()
        exports = dict(getattr(root, "outputs", {}) or {})
        return pulumi.Output.all(**exports).apply(deployment.exports.update) if exports else None

    pulumi.runtime.test(body)()  # type: ignore[no-untyped-call]  # pulumi.runtime.test has no annotations
    for resource in mocks.registered:
        urn, parent, protect, retain = placed.get((resource.type, resource.name), ("", "", False, False))
        deployment.resources.append(dataclasses.replace(resource, urn=urn, parent=parent, protect=bool(protect),
                                                        retain_on_delete=bool(retain)))
    return deployment
