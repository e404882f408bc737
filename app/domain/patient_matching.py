"""Which identifiers may name a patient, and when a named patient is not the one a message
describes. Pure: the policy is data (``app/data/patient_matching.yaml``), read elsewhere.

A *matching key* is an identifier whose type (HL7 v2 table 0203) is a configured matching type
(or, on channels where that is allowed, that carries no type), whose system (the assigning
authority) is accepted, and whose value is not a placeholder. Nothing else ever names a
patient: a placeholder SSN shared by two people must not merge them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

Channel = Literal["hl7v2", "fhir"]
CHANNELS: tuple[Channel, ...] = ("hl7v2", "fhir")
Demographic = Literal["sex", "birth_date"]

# Whatever a deployment configures, an SSN is never a matching key.
ALWAYS_EXCLUDED_TYPES = frozenset({"SS"})
_UNKNOWN_SEX = frozenset({"", "unknown"})
_SEPARATORS = re.compile(r"[\s\-./]")
_REPEATED_DIGIT = re.compile(r"^(\d)\1*$")


class MatchingPolicyError(ValueError):
    """The patient-matching file is invalid: a deployment defect, refused at load time."""


@dataclass(frozen=True, slots=True)
class TypedIdentifier:
    """An identifier as a message sent it: system (assigning authority), value, and its HL7
    table 0203 type code when the sender gave one."""

    system: str
    value: str
    type: str | None = None


def normalize_type(code: str | None) -> str | None:
    text = (code or "").strip().upper()
    return text or None


def normalize_value(value: str) -> str:
    return _SEPARATORS.sub("", value).upper()


@dataclass(frozen=True, slots=True)
class MatchingPolicy:
    matching_types: frozenset[str]
    excluded_types: frozenset[str]
    excluded_systems: frozenset[str]
    placeholder_values: frozenset[str]  # normalized (normalize_value)
    repeated_digit_is_placeholder: bool = True
    untyped_identifiers_match: Mapping[Channel, bool] = field(default_factory=dict)
    facility_authorities: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def is_placeholder(self, value: str) -> bool:
        normalized = normalize_value(value)
        if not normalized or normalized in self.placeholder_values:
            return True
        return self.repeated_digit_is_placeholder and bool(_REPEATED_DIGIT.match(normalized))

    def refusal(
        self, identifier: TypedIdentifier, *, channel: Channel, facility: str | None = None
    ) -> str | None:
        """Why ``identifier`` is not a matching key, or None when it is one."""
        never = self.never_matches(identifier)
        if never is not None:
            return never
        kind = normalize_type(identifier.type)
        if kind is None:
            if not self.untyped_identifiers_match.get(channel, False):
                return "the identifier has no type (HL7 table 0203 code such as MR)"
        elif kind not in self.matching_types:
            return (
                f"identifier type {kind} is not a matching type "
                f"({', '.join(sorted(self.matching_types))})"
            )
        if facility is not None:
            allowed = self.facility_authorities.get(facility.casefold())
            if allowed is not None and identifier.system not in allowed:
                return (
                    f"assigning authority {identifier.system!r} is not accepted from "
                    f"facility {facility!r}"
                )
        return None

    def never_matches(self, identifier: TypedIdentifier) -> str | None:
        """Why ``identifier`` can never name a patient on any channel (an excluded type or
        system, a placeholder value), or None."""
        kind = normalize_type(identifier.type)
        if kind is not None and kind in self.excluded_types:
            return f"identifier type {kind} is never used to match a patient"
        if identifier.system in self.excluded_systems:
            return f"identifiers of system {identifier.system!r} are never used to match a patient"
        if self.is_placeholder(identifier.value):
            return "the value is a placeholder"
        return None

    def is_key(
        self, identifier: TypedIdentifier, *, channel: Channel, facility: str | None = None
    ) -> bool:
        return self.refusal(identifier, channel=channel, facility=facility) is None

    def stored_may_match(self, stored_type: str | None) -> bool:
        """Whether a stored identifier of this type may be matched at all: untyped (registered
        through the native API, or before types were kept) or a matching type."""
        kind = normalize_type(stored_type)
        return kind is None or (kind in self.matching_types and kind not in self.excluded_types)


def contradictions(
    *,
    recorded_sex: str,
    recorded_birth_date: date | None,
    sent_sex: str,
    sent_birth_date: date | None,
) -> tuple[Demographic, ...]:
    """The demographics on which a message contradicts the patient it names. Unknown or
    missing on either side is not a contradiction; two known, different values are."""
    found: list[Demographic] = []
    if (
        recorded_sex not in _UNKNOWN_SEX
        and sent_sex not in _UNKNOWN_SEX
        and recorded_sex != sent_sex
    ):
        found.append("sex")
    if (
        recorded_birth_date is not None
        and sent_birth_date is not None
        and recorded_birth_date != sent_birth_date
    ):
        found.append("birth_date")
    return tuple(found)


def _codes(document: Mapping[str, Any], name: str) -> frozenset[str]:
    values = document.get(name) or []
    if not isinstance(values, list) or not all(isinstance(v, str) and v.strip() for v in values):
        raise MatchingPolicyError(f"{name} must be a list of non-empty strings")
    return frozenset(v.strip().upper() for v in values)


def _strings(document: Mapping[str, Any], name: str) -> frozenset[str]:
    values = document.get(name) or []
    if not isinstance(values, list) or not all(isinstance(v, str | int) for v in values):
        raise MatchingPolicyError(f"{name} must be a list of strings")
    return frozenset(str(v).strip() for v in values)


def policy_from_document(document: Mapping[str, Any]) -> MatchingPolicy:
    """A policy from the YAML document; MatchingPolicyError names what is wrong."""
    if not isinstance(document, Mapping):
        raise MatchingPolicyError("the patient-matching file must be a mapping")
    matching = _codes(document, "matching_types")
    excluded = _codes(document, "excluded_types") | ALWAYS_EXCLUDED_TYPES
    if not matching:
        raise MatchingPolicyError("matching_types must name at least one identifier type")
    if matching & excluded:
        raise MatchingPolicyError(
            f"{', '.join(sorted(matching & excluded))} cannot be both a matching and an "
            "excluded type (SS is never a matching type)"
        )
    untyped = document.get("untyped_identifiers_match") or {}
    if not isinstance(untyped, Mapping) or not set(untyped) <= set(CHANNELS):
        raise MatchingPolicyError(f"untyped_identifiers_match takes {', '.join(CHANNELS)}")
    if not all(isinstance(v, bool) for v in untyped.values()):
        raise MatchingPolicyError("untyped_identifiers_match values must be true or false")
    authorities = document.get("facility_authorities") or {}
    if not isinstance(authorities, Mapping):
        raise MatchingPolicyError("facility_authorities must map a facility to a list")
    repeated = document.get("repeated_digit_is_placeholder", True)
    if not isinstance(repeated, bool):
        raise MatchingPolicyError("repeated_digit_is_placeholder must be true or false")
    return MatchingPolicy(
        matching_types=matching,
        excluded_types=excluded,
        excluded_systems=_strings(document, "excluded_systems"),
        placeholder_values=frozenset(
            normalize_value(v) for v in _strings(document, "placeholder_values")
        ),
        repeated_digit_is_placeholder=repeated,
        untyped_identifiers_match={c: bool(untyped.get(c, False)) for c in CHANNELS},
        facility_authorities={
            str(facility).casefold(): _strings(authorities, facility) for facility in authorities
        },
    )
