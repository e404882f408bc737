"""Find the patient a message names (HL7 v2 PID, a FHIR Patient entry) on its matching keys only,
and refuse it when the stored patient is not the person the message describes.

The rules are ``app.domain.patient_matching`` over the policy in
``app/data/patient_matching.yaml`` (or ``MINERAL_PATIENT_MATCHING_FILE``). The errors carry
what each adapter needs to say where the problem is (key positions, demographic fields) and
the patient id for the audit row, never in the response body.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path

import yaml
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings, get_settings
from app.core.errors import AppError, ConflictError, UnprocessableError
from app.domain.patient_matching import (
    Channel,
    Demographic,
    MatchingPolicy,
    MatchingPolicyError,
    TypedIdentifier,
    contradictions,
    policy_from_document,
)
from app.domain.types import Sex
from app.kit.schemas_common import IdentifierIn
from app.models.patient import Patient
from app.patients import repository
from app.patients import service as patients
from app.patients.schemas import HumanNameIn, PatientCreate

DEFAULT_POLICY_PATH = Path(__file__).resolve().parents[1] / "data" / "patient_matching.yaml"


@cache
def load_policy(path: str) -> MatchingPolicy:
    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise MatchingPolicyError(f"cannot read the patient-matching file {path}: {exc}") from exc
    return policy_from_document(document)


def current_policy(settings: Settings | None = None) -> MatchingPolicy:
    """The deployment's policy (MINERAL_PATIENT_MATCHING_FILE, else the shipped file)."""
    settings = settings or get_settings()
    return load_policy(settings.patient_matching_file or str(DEFAULT_POLICY_PATH))


class MatchError(AppError):
    """A message's patient cannot be matched safely: nothing of the message is stored."""


class NoMatchingKeyError(
    MatchError,
    UnprocessableError,
    slug="no-matching-identifier",
    title="No identifier can safely name the patient",
): ...


class IdentifiersConflictError(
    MatchError,
    ConflictError,
    slug="identifiers-name-different-patients",
    title="The identifiers name different patients",
):
    """Matching keys of one message name different stored patients."""

    def __init__(self, detail: str, *, positions: Sequence[int]) -> None:
        super().__init__(detail)
        self.positions = tuple(positions)


class DemographicsConflictError(
    MatchError,
    ConflictError,
    slug="patient-demographics-conflict",
    title="The patient's recorded sex or birth date contradicts the message",
):
    """The patient the identifiers name has another recorded sex or birth date."""

    def __init__(
        self, detail: str, *, fields: Sequence[Demographic], patient_id: uuid.UUID
    ) -> None:
        super().__init__(detail)
        self.fields = tuple(fields)
        self.patient_id = patient_id  # for the audit row only


@dataclass(frozen=True, slots=True)
class Claim:
    """What a message says about its patient: its matching keys (already filtered by the
    policy, in the message's order, with their position in the message) and demographics."""

    keys: tuple[TypedIdentifier, ...]
    positions: tuple[int, ...]
    sex: Sex
    birth_date: date | None
    # The name the message gives (HL7 PID-5, FHIR Patient.name): kept on a new patient only.
    name: HumanNameIn | None = None


def claim_of(
    identifiers: Sequence[TypedIdentifier],
    *,
    sex: Sex,
    birth_date: date | None,
    channel: Channel,
    facility: str | None = None,
    policy: MatchingPolicy | None = None,
    name: HumanNameIn | None = None,
) -> Claim:
    """The claim made by a message's identifiers: only its matching keys (distinct)."""
    policy = policy or current_policy()
    keys: list[TypedIdentifier] = []
    positions: list[int] = []
    seen: set[tuple[str, str]] = set()
    for position, identifier in enumerate(identifiers):
        pair = (identifier.system, identifier.value)
        if pair in seen or not policy.is_key(identifier, channel=channel, facility=facility):
            continue
        seen.add(pair)
        keys.append(identifier)
        positions.append(position)
    return Claim(tuple(keys), tuple(positions), sex, birth_date, name)


async def find(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    claim: Claim,
    also: Sequence[uuid.UUID] = (),
    policy: MatchingPolicy | None = None,
) -> Patient | None:
    """The one stored patient the claim's keys (and ``also``: patients found another way, such
    as a FHIR ``ifNoneExist`` search) name; None when none does.

    Refused: keys naming different patients (IdentifiersConflictError), and a patient whose
    recorded sex or birth date contradicts the claim (DemographicsConflictError)."""
    policy = policy or current_policy()
    owners = await repository.identifier_owners(
        session,
        organization_id=organization_id,
        pairs=[(key.system, key.value) for key in claim.keys],
    )
    owner_of = {
        (system, value): patient_id
        for system, value, stored_type, patient_id in owners
        if policy.stored_may_match(stored_type)
    }
    named = [owner_of.get((key.system, key.value)) for key in claim.keys]
    patient_ids = list(dict.fromkeys([*also, *(p for p in named if p is not None)]))
    if len(patient_ids) > 1:
        raise IdentifiersConflictError(
            "The patient's identifiers name different registered patients; nothing was stored. "
            "Correct the identifiers (or merge the patients) and send it again.",
            positions=[pos for pos, p in zip(claim.positions, named, strict=True) if p],
        )
    if not patient_ids:
        return None
    patient = await repository.get_plain(
        session, organization_id=organization_id, patient_id=patient_ids[0]
    )
    assert patient is not None  # found through its own identifier, in this organization
    fields = contradictions(
        recorded_sex=patient.sex,
        recorded_birth_date=patient.birth_date,
        sent_sex=claim.sex.value,
        sent_birth_date=claim.birth_date,
    )
    if fields:
        names = " and ".join("birth date" if f == "birth_date" else f for f in fields)
        raise DemographicsConflictError(
            f"The patient these identifiers name has a different recorded {names}; nothing was "
            "stored. Check that the identifier belongs to this person.",
            fields=fields,
            patient_id=patient.id,
        )
    return patient


async def find_or_create(
    session: AsyncSession, *, organization_id: uuid.UUID, claim: Claim
) -> tuple[Patient, bool]:
    """The patient the claim names, or a new one registered with the claim's matching keys
    (with their types): (patient, created). A new patient is only created when no key names
    a stored one."""
    if not claim.keys:
        raise NoMatchingKeyError("No identifier of the patient is a matching key.")
    found = await find(session, organization_id=organization_id, claim=claim)
    if found is not None:
        return found, False
    try:
        created = await register(session, organization_id=organization_id, claim=claim)
    except patients.IdentifierInUseError:
        # Another message registered this patient at the same moment (its insert won the unique
        # key): match again, with the same checks, against that patient.
        found = await find(session, organization_id=organization_id, claim=claim)
        if found is None:
            raise
        return found, False
    return created, True


async def register(session: AsyncSession, *, organization_id: uuid.UUID, claim: Claim) -> Patient:
    """A new patient with the claim's matching keys (and their types) as identifiers; the
    message's other identifiers are not kept. IdentifierInUseError when a key is taken."""
    if not claim.keys:
        raise NoMatchingKeyError("No identifier of the patient is a matching key.")
    keys = claim.keys[:10]
    data = PatientCreate(
        identifiers=[IdentifierIn(system=k.system, value=k.value) for k in keys],
        sex=claim.sex,
        birth_date=claim.birth_date,
        name=claim.name,
    )
    return await patients.create(
        session,
        organization_id=organization_id,
        data=data,
        identifier_types=[k.type for k in keys],
    )


def check_reference(system: str, value: str, *, policy: MatchingPolicy | None = None) -> None:
    """A panel naming its patient by ``system|value`` (native JSON, a FHIR conditional
    reference): refused when that identifier can never name a patient (excluded system or a
    placeholder value). The native API has no identifier type, so the type rules do not apply."""
    policy = policy or current_policy()
    reason = policy.never_matches(TypedIdentifier(system, value))
    if reason is not None:
        raise NoMatchingKeyError(
            f"body.patient.identifier cannot name a patient: {reason}.",
            errors=[{"field": "body.patient.identifier", "message": reason}],
        )
