"""Reading a ``ChannelServerArgs`` from a stack's config (``from_config``): the config key
of every args field, and of each field of an object field, since Pulumi.yaml has no object type.

Like ``args``, it does not import Pulumi.
"""

from __future__ import annotations

import typing
from typing import Any, Mapping, Sequence, Union

from .args import ChannelServerArgs, ConnectAuthorizerArgs, CustomDomainArgs, HttpBackendArgs


def config_key(field_name: str) -> str:
    """The stack config key of an args field: ``stage_name`` → ``stageName``;
    of a field of an object field: ``domain_certificate_arn`` → ``domainCertificateArn``."""
    head, *rest = field_name.split("_")
    return head + "".join(part.capitalize() for part in rest)


#: The object fields (Pulumi.yaml has no object type: each of their fields is a
#: key of its own, ``config_key(f"{field}_{subfield}")``) and the subfield that
#: must be set for the object to be set at all.
OBJECT_FIELDS = {"backend": ("url", HttpBackendArgs), "domain": ("name", CustomDomainArgs),
                 "authorizer": ("function_arn", ConnectAuthorizerArgs)}


def object_config_keys(field_name: str) -> dict[str, str]:
    """The config key of each field of an object field: ``{"url": "backendUrl", …}``."""
    kind = OBJECT_FIELDS[field_name][1]
    return {sub: config_key(f"{field_name}_{sub}") for sub in kind.__annotations__}


def kind_of(hint: Any) -> type:
    """The plain type behind a field's annotation: ``Input[str]`` is ``str``,
    ``Sequence[str]`` is ``list``, a TypedDict or a Mapping is ``dict``."""
    if typing.get_origin(hint) is Union:  # Input[T] = Union[T, Awaitable[T], Output[T]]: T
        return kind_of(typing.get_args(hint)[0])
    origin = typing.get_origin(hint) or hint
    if not isinstance(origin, type):
        raise TypeError(f"an args field's annotation must name a type, not {hint!r}")
    if typing.is_typeddict(hint) or issubclass(origin, Mapping):
        return dict
    if issubclass(origin, Sequence) and origin is not str:
        return list
    return origin


def field_kinds(kind: type = ChannelServerArgs) -> dict[str, type]:
    """Each field of an args TypedDict and its plain type (``kind_of``)."""
    return {name: kind_of(hint) for name, hint in kind.__annotations__.items()}


def from_config(config: Any) -> ChannelServerArgs:
    """ChannelServerArgs from a ``pulumi.Config`` of this project: every key that
    is set, read with its field's type; unset keys keep the component's defaults.
    An object field (``backend``, ``domain``, ``authorizer``) is read from one
    key per field of its own, and is set only when its required key is set and
    not empty (``backendUrl``, ``domainName``, ``authorizerFunctionArn``)."""
    readers = {str: config.get, int: config.get_int, float: config.get_float, bool: config.get_bool,
               dict: config.get_object, list: config.get_object}

    def read(key: str, kind: type) -> Any:
        value = readers[kind](key)
        return None if value == "" or value == [] else value  # "" and [] are Pulumi.yaml's way to say unset

    args: dict[str, Any] = {}
    for name, kind in field_kinds().items():
        if name in OBJECT_FIELDS:
            required, object_kind = OBJECT_FIELDS[name]
            keys = object_config_keys(name)
            value = {sub: read(keys[sub], sub_kind) for sub, sub_kind in field_kinds(object_kind).items()}
            if value[required] is not None:
                args[name] = {sub: v for sub, v in value.items() if v is not None}
            continue
        value = read(config_key(name), kind)
        if value is not None:
            args[name] = value
    # every key is a field of ChannelServerArgs (field_kinds), its value read with the field's type
    return typing.cast(ChannelServerArgs, args)
