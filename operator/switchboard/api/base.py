"""The shared base of every CRD shape: camelCase on the wire, strict, immutable."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

GROUP = "switchboard.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORY = "switchboard"


class CrdModel(BaseModel):
    """Base for spec and status models: camelCase aliases, unknown fields refused, frozen.

    The docstring of each subclass becomes the description of its object in the CRD, and
    `Field(description=...)` the description of each property (`kubectl explain` shows both).
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=False,
        validate_default=False,
    )
