"""How ``ChannelServer``'s children are named, parented and tagged: the one value every
builder (``functions``, ``routes``, ``features``) takes.

Through it, each resource is a child of the component, named after it, with its tags."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from .args import Settings
from .handlers import spec


@dataclass(frozen=True)
class Scope:
    """The component a builder registers resources under, and its settings."""

    name: str
    """The component's name: every child's name starts with ``{name}-``."""
    settings: Settings
    parent: pulumi.Resource
    """The component itself."""
    tags: Any
    """The tags every taggable child gets: a dict, an Output of one, or None."""
    child: pulumi.ResourceOptions
    """The options of a child that needs no others (``parent`` only)."""

    @classmethod
    def of(cls, component: pulumi.Resource, name: str, settings: Settings) -> Scope:
        return cls(name, settings, component, settings.tags or None, pulumi.ResourceOptions(parent=component))

    def options(self, **options: Any) -> pulumi.ResourceOptions:
        """A child's options beyond its parent (``depends_on=[...]``)."""
        return pulumi.ResourceOptions(parent=self.parent, **options)

    def slug(self, definition: spec.Function) -> str:
        """The names of a function's resources: ``{component}-{function}``, in
        resource names' own spelling (``server_publish`` → ``server-publish``)."""
        return f"{self.name}-{definition.function.replace('_', '-')}"
