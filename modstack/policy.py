"""The moderation policies: each one a folder of definitions under `modstack/policies/`.

A policy is data and configuration (its labels, its block precision, its review budget; the
pipelines add its training data and behaviour suite from the same folder), never a copy of
code: adding a third policy means adding a folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

POLICIES_DIR = Path(__file__).with_name("policies")
DEFAULT_POLICY = "spam"  # what a label or prediction without a policy (schema v1 before) is about


class TrainingDefinition(BaseModel):
    """How the pipelines train a policy's model (read by pipelines/, not by the services)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label_column: str  # the corpus column holding the policy's label
    model: str  # a key of pipelines.fitting.MODEL_FACTORIES
    features: Literal["feast", "text", "none"]  # Feast features, text features, or none
    short_text_check: bool  # the block cut-off must also hold on short windows of validation
    # which messages train it: the e-mails, the comments (modstack/corpus/comments.py), or both
    sources: tuple[Literal["email", "comments"], ...]


class PolicyDefinition(BaseModel):
    """One `policies/<name>/policy.yaml`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    title: str
    positive_label: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    negative_label: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    block_precision: float = Field(gt=0.5, lt=1.0)
    review_budget: float = Field(gt=0.0, lt=1.0)
    traffic_positive_share: float = Field(gt=0.0, lt=1.0)
    training: TrainingDefinition

    @property
    def labels(self) -> tuple[str, str]:
        """(positive, negative)."""
        return (self.positive_label, self.negative_label)

    @property
    def registered_model(self) -> str:
        """The MLflow registered model that holds this policy's classifier versions."""
        return f"{self.name}-classifier"

    @property
    def folder(self) -> Path:
        """The policy's folder of definitions (behaviour suite, data description)."""
        return POLICIES_DIR / self.name

    @property
    def behaviour_suite(self) -> Path:
        """The policy's behavioural test suite (read by pipelines.behaviour)."""
        return self.folder / "behaviour.yaml"

    @property
    def experiment(self) -> str:
        """The MLflow experiment its training runs are logged to."""
        return f"{self.name}-moderation"


@dataclass(frozen=True)
class PolicyCatalogue:
    """Every policy found under `policies/`, by name, in a stable order (spam first)."""

    by_name: dict[str, PolicyDefinition]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.by_name)

    def get(self, name: str) -> PolicyDefinition:
        """The policy called `name`; ValueError naming the known ones otherwise."""
        try:
            return self.by_name[name]
        except KeyError:
            raise ValueError(f"unknown policy {name!r}: known are {list(self.by_name)}") from None

    def policy_of_label(self, label: str) -> PolicyDefinition:
        """The one policy whose labels include `label`."""
        for policy in self.by_name.values():
            if label in policy.labels:
                return policy
        known = [lab for p in self.by_name.values() for lab in p.labels]
        raise ValueError(f"unknown label {label!r}: known are {known}")


@cache
def catalogue(root: Path = POLICIES_DIR) -> PolicyCatalogue:
    """Load every `<root>/<name>/policy.yaml` (cached); the default policy first."""
    found: dict[str, PolicyDefinition] = {}
    for path in sorted(root.glob("*/policy.yaml")):
        definition = PolicyDefinition.model_validate(yaml.safe_load(path.read_text()))
        if definition.name != path.parent.name:
            raise ValueError(f"{path}: name {definition.name!r} differs from its folder")
        found[definition.name] = definition
    if DEFAULT_POLICY not in found:
        raise ValueError(f"{root}: no {DEFAULT_POLICY!r} policy")
    labels = [lab for p in found.values() for lab in p.labels]
    if len(labels) != len(set(labels)):
        raise ValueError(f"{root}: two policies share a label: {labels}")
    ordered = {DEFAULT_POLICY: found.pop(DEFAULT_POLICY), **found}
    return PolicyCatalogue(ordered)


def known_policy(name: str) -> str:
    """Validator: `name` is a policy of the catalogue."""
    catalogue().get(name)
    return name


def known_label(label: str) -> str:
    """Validator: `label` belongs to some policy of the catalogue."""
    catalogue().policy_of_label(label)
    return label


# Validated against the catalogue; the JSON Schema lists the values, as a Literal would.
PolicyName = Annotated[
    str,
    AfterValidator(known_policy),
    WithJsonSchema({"type": "string", "enum": list(catalogue().names)}),
]
LabelName = Annotated[
    str,
    AfterValidator(known_label),
    WithJsonSchema(
        {"type": "string", "enum": [lab for p in catalogue().by_name.values() for lab in p.labels]}
    ),
]


def policy_of_label(label: str) -> str:
    """The name of the one policy whose labels include `label` (ValueError if none)."""
    return catalogue().policy_of_label(label).name


def label_matches_policy(label: str, policy: str) -> None:
    """ValueError unless `label` is one of `policy`'s two labels."""
    definition = catalogue().get(policy)
    if label not in definition.labels:
        raise ValueError(
            f"label {label!r} is not a label of policy {policy!r} "
            f"(expected {' or '.join(repr(x) for x in definition.labels)})"
        )
