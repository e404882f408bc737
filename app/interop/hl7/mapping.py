"""An ORU^R01 message → the panels it reports, as the native API's ``PanelCreate`` models.

Nothing is stored here. Every problem found in the message is collected, so the sender learns
all of them from one ACK: an unmapped local code, an unknown LOINC code, an unknown specimen,
a value the panel schema refuses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

from pydantic import ValidationError

from app.domain.catalog import Catalog, default_catalog
from app.domain.errors import DomainError
from app.domain.patient_matching import TypedIdentifier, normalize_type
from app.domain.result_status import HL7_OBX11, HL7_WITHDRAWING, ResultStatus
from app.domain.types import Sex, Specimen
from app.identifier_systems import system_uri
from app.interop.hl7.code_maps import CodeMaps, default_code_maps
from app.interop.hl7.errors import ErrorCode, Issue, Location, MessageError
from app.interop.hl7.locations import validation_issues
from app.interop.hl7.message import (
    CodedElement,
    ExtendedId,
    MessageHeader,
    Observation,
    ObservationRequest,
    OruMessage,
    PatientIdentification,
)
from app.kit.schemas_common import IdentifierIn
from app.panels.schemas import LabRangeIn, PanelCreate, PatientRef, ResultIn
from app.patients.schemas import HumanNameIn, PatientCreate

LOINC_SYSTEMS = frozenset({"LN", "LNC", "LOINC", "HTTP://LOINC.ORG"})
# HL7 tables 0070 / 0487 specimen codes (and the spellings labs use) → our specimens.
SPECIMENS = {
    "SER": Specimen.SERUM,
    "SERUM": Specimen.SERUM,
    "SER/PLAS": Specimen.SERUM,
    "PLAS": Specimen.PLASMA,
    "PLA": Specimen.PLASMA,
    "PLASMA": Specimen.PLASMA,
    "BLD": Specimen.WHOLE_BLOOD,
    "BLDV": Specimen.WHOLE_BLOOD,
    "WB": Specimen.WHOLE_BLOOD,
    "RBC": Specimen.RBC,
}
# SPM-4 in SNOMED CT (specimen hierarchy concepts) → our specimens.
SNOMED_SPECIMENS = {
    "119364003": Specimen.SERUM,  # Serum specimen
    "119361006": Specimen.PLASMA,  # Plasma specimen
    "258580003": Specimen.WHOLE_BLOOD,  # Whole blood specimen
    "119297000": Specimen.WHOLE_BLOOD,  # Blood specimen
    "119351004": Specimen.RBC,  # Erythrocyte specimen
}
SNOMED_SYSTEMS = frozenset({"SCT", "SNM", "SNOMEDCT", "SNOMED CT", "HTTP://SNOMED.INFO/SCT"})
HL7_SPECIMEN_SYSTEMS = frozenset({"HL70487", "HL70070", ""})
MAX_COMMENT = 4000  # ResultIn.lab_comment
PanelStatus = Literal["preliminary", "final", "corrected"]


@dataclass(frozen=True, slots=True)
class Withdrawal:
    """An OBX with OBX-11 W, D or X and no value: withdraws the result stored earlier for
    this analyte in the same panel (same accession), if there is one."""

    analyte: str  # our analyte code
    status: ResultStatus  # entered-in-error | cancelled
    location: Location


@dataclass(frozen=True, slots=True)
class PanelDraft:
    """One OBR group, ready for ingestion, with what is needed to find or create its patient.

    ``content`` is None when every OBX of the group is a withdrawal without a value (then
    ``source`` / ``accession`` name the stored panel they withdraw from)."""

    content: PanelCreate | None
    identifiers: tuple[IdentifierIn, ...]
    patient: PatientCreate
    patient_location: Location
    order_location: Location
    result_locations: tuple[Location, ...]
    corrects: bool
    # PID-3: every identifier as sent, with its CX-5 type (HL7 table 0203), in PID-3 order.
    typed_identifiers: tuple[TypedIdentifier, ...] = ()
    withdrawals: tuple[Withdrawal, ...] = ()
    source: str = ""
    accession: str = ""

    @property
    def panel(self) -> PanelCreate:
        assert self.content is not None, "a draft of withdrawals only has no panel to store"
        return self.content

    def with_patient(self, patient: PatientRef) -> PanelCreate:
        return self.panel.model_copy(update={"patient": patient})


def source_of(header: MessageHeader) -> str:
    """The panel's source: sending application ^ sending facility (MSH-3 ^ MSH-4)."""
    return f"{header.sending_application}^{header.sending_facility}"


def identifier_system(identifier: ExtendedId, facility: str) -> str:
    """A CX's assigning authority as an identifier system: its universal id (an OID as
    ``urn:oid:...``), else its namespace id, else a name private to the sending facility."""
    universal, kind = identifier.authority_universal_id, identifier.authority_universal_id_type
    if universal:
        if kind.upper() == "ISO" and not universal.startswith("urn:"):
            return f"urn:oid:{universal}"
        if kind.upper() == "UUID" and not universal.startswith("urn:"):
            return f"urn:uuid:{universal.lower()}"
        # The sender says it is a URI (CX-4.3 "URI"): kept as sent; anything else is mapped.
        return universal if kind.upper() == "URI" else system_uri(universal)
    if identifier.authority_namespace:
        return system_uri(identifier.authority_namespace)
    # No authority: a namespace private to the sending facility (a URN, as stored since v1).
    facility_name = quote(facility or "unknown", safe="")
    return f"urn:hl7v2:{facility_name}:{quote(identifier.type_code or 'PI', safe='')}"


def panel_drafts(
    message: OruMessage, *, code_maps: CodeMaps | None = None, catalog: Catalog | None = None
) -> list[PanelDraft]:
    """Every OBR group of the message as a draft, or MessageError (AE) listing all problems."""
    code_maps = code_maps or default_code_maps()
    catalog = catalog or default_catalog()
    header = message.header
    if not header.sending_application and not header.sending_facility:
        raise MessageError(
            [
                Issue(
                    ErrorCode.REQUIRED_FIELD_MISSING,
                    "MSH-3 or MSH-4 (sending application / facility) is required: with the "
                    "accession it identifies a panel",
                    Location("MSH", field=4),
                )
            ]
        )
    issues: list[Issue] = []
    drafts: list[PanelDraft] = []
    for patient in message.patients:
        identifiers, patient_create = _patient(patient, header.sending_facility, issues)
        for order in patient.orders:
            draft = _draft(
                order,
                header=header,
                identifiers=identifiers,
                patient_create=patient_create,
                patient_location=Location("PID", patient.sequence),
                typed=tuple(typed_identifiers(patient, header.sending_facility)),
                code_maps=code_maps,
                catalog=catalog,
                issues=issues,
            )
            if draft is not None:
                drafts.append(draft)
    if issues:
        raise MessageError(issues)
    return drafts


def typed_identifiers(patient: PatientIdentification, facility: str) -> list[TypedIdentifier]:
    """PID-3's repetitions as (system, value, type), distinct on (system, value)."""
    found: dict[tuple[str, str], TypedIdentifier] = {}
    for identifier in patient.identifiers:
        system = identifier_system(identifier, facility)
        found.setdefault(
            (system, identifier.value),
            TypedIdentifier(system, identifier.value, normalize_type(identifier.type_code)),
        )
    return list(found.values())


def _patient(
    patient: PatientIdentification, facility: str, issues: list[Issue]
) -> tuple[tuple[IdentifierIn, ...], PatientCreate | None]:
    pairs = [(i.system, i.value) for i in typed_identifiers(patient, facility)]
    try:
        identifiers = tuple(IdentifierIn(system=s, value=v) for s, v in pairs[:10])
        name = (
            HumanNameIn(family=patient.family_name or None, given=list(patient.given_names))
            if patient.family_name or patient.given_names
            else None
        )
        created = PatientCreate(
            identifiers=list(identifiers),
            sex=Sex(patient.sex),
            birth_date=patient.birth_date,
            name=name,
        )
    except ValidationError as exc:
        for error in exc.errors():
            loc = error.get("loc", ())
            field = 7 if "birth_date" in loc else 5 if "name" in loc else 3
            issues.append(
                Issue(
                    ErrorCode.DATA_TYPE,
                    error.get("msg", "invalid"),
                    Location("PID", patient.sequence, field),
                )
            )
        return (), None
    return identifiers, created


def _draft(
    order: ObservationRequest,
    *,
    header: MessageHeader,
    identifiers: tuple[IdentifierIn, ...],
    patient_create: PatientCreate | None,
    patient_location: Location,
    typed: tuple[TypedIdentifier, ...],
    code_maps: CodeMaps,
    catalog: Catalog,
    issues: list[Issue],
) -> PanelDraft | None:
    facility = header.sending_facility
    order_location = Location("OBR", order.sequence)
    before = len(issues)
    specimen = _specimen(order, issues)
    notes = _notes(order)
    if all(observation.is_note for observation in order.observations):
        issues.append(
            Issue(
                ErrorCode.REQUIRED_FIELD_MISSING,
                "the order has only narrative or coded values (OBX-2 TX, FT, CE, CWE) and no "
                "numeric result to keep them with; nothing of it was stored",
                Location("OBR", order.sequence),
            )
        )
    status = _panel_status({observation.status for observation in order.observations})
    results: list[ResultIn] = []
    locations: list[Location] = []
    withdrawals: list[Withdrawal] = []
    for observation in order.observations:
        if observation.is_note:
            continue  # the lab's narrative / coded comment: kept with the results (_notes)
        if observation.status in HL7_WITHDRAWING and not observation.value:
            withdrawal = _withdrawal(observation, facility, code_maps, catalog, issues)
            if withdrawal is not None:
                withdrawals.append(withdrawal)
            continue
        result = _result(
            observation,
            facility,
            code_maps,
            catalog,
            issues,
            panel_status=status,
            comment=notes.get(observation.sequence),
        )
        if result is not None:
            results.append(result)
            locations.append(Location("OBX", observation.sequence))
    collected_at = order.collected_at
    if collected_at.tzinfo is None:
        collected_at = collected_at.replace(tzinfo=code_maps.timezone_for(facility))
    if len(issues) > before or patient_create is None or specimen is None:
        return None
    statuses = {observation.status for observation in order.observations}
    panel: PanelCreate | None = None
    try:
        if results or not withdrawals:
            panel = PanelCreate(
                patient=PatientRef(identifier=identifiers[0]),
                source=source_of(header),
                accession=order.accession,
                specimen=specimen,
                status=status,
                collected_at=collected_at,
                results=results,
            )
    except ValidationError as exc:
        issues.extend(validation_issues(exc, order_location, locations))
        return None
    return PanelDraft(
        content=panel,
        identifiers=identifiers,
        patient=patient_create,
        patient_location=patient_location,
        order_location=order_location,
        result_locations=tuple(locations),
        # W / D / X change a result sent before, as C does.
        corrects=bool(statuses & {"C", *HL7_WITHDRAWING}),
        typed_identifiers=typed,
        withdrawals=tuple(withdrawals),
        source=source_of(header),
        accession=order.accession,
    )


def _panel_status(statuses: set[str]) -> PanelStatus:
    """The panel's status from its OBX-11 codes: a correction when any result corrects or
    withdraws one sent before (C, W, D), preliminary when any is not final (P, R, S)."""
    if statuses & {"C", "W", "D"}:
        return "corrected"
    if statuses & {"P", "R", "S"}:
        return "preliminary"
    return "final"


def _withdrawal(
    observation: Observation,
    facility: str,
    code_maps: CodeMaps,
    catalog: Catalog,
    issues: list[Issue],
) -> Withdrawal | None:
    location = Location("OBX", observation.sequence, 3)
    analyte = _analyte(observation, facility, code_maps, catalog, location, issues)
    if analyte is None:
        return None
    try:
        code = catalog.resolve(analyte).code
    except DomainError as exc:
        issues.append(Issue(ErrorCode.TABLE_VALUE_NOT_FOUND, str(exc), location))
        return None
    return Withdrawal(
        analyte=code,
        status=HL7_OBX11[observation.status],
        location=Location("OBX", observation.sequence),
    )


def _notes(order: ObservationRequest) -> dict[int, str]:
    """The lab's comments of an order, by the OBX sequence of the result they belong to.

    An NTE belongs to the OBX before it. A narrative (TX / FT) or non-numeric coded (CE / CWE)
    OBX and its NTE belong to the numeric result before it in the same OBR, or the first one
    after it when it comes first; NTE after the OBR itself (order comments) go to the first
    numeric result too. An order of narrative only has no result to keep them on."""
    numeric = [o for o in order.observations if not o.is_note]
    if not numeric:
        return {}
    found: dict[int, list[str]] = {o.sequence: [] for o in numeric}
    found[numeric[0].sequence].extend(order.comments)
    owner: Observation | None = None
    pending: list[str] = []
    for observation in order.observations:
        if observation.is_note:
            texts = [observation.value, *observation.comments]
            if owner is None:
                pending.extend(texts)
            else:
                found[owner.sequence].extend(texts)
            continue
        owner = observation
        found[owner.sequence].extend(pending)
        pending = []
        found[owner.sequence].extend(observation.comments)
    return {sequence: "\n".join(texts) for sequence, texts in found.items() if texts}


def _specimen(order: ObservationRequest, issues: list[Issue]) -> Specimen | None:
    if order.specimen_type is not None:
        return _spm_specimen(order, order.specimen_type, issues)
    if not order.specimen:
        return Specimen.SERUM
    specimen = SPECIMENS.get(order.specimen.upper())
    if specimen is None:
        issues.append(
            Issue(
                ErrorCode.TABLE_VALUE_NOT_FOUND,
                f"specimen {order.specimen!r} is not one of {', '.join(sorted(SPECIMENS))}",
                Location("OBR", order.sequence, 15),
            )
        )
    return specimen


def _spm_specimen(
    order: ObservationRequest, code: CodedElement, issues: list[Issue]
) -> Specimen | None:
    """SPM-4 (CWE): SNOMED CT or HL7 table 0487 in either triplet; takes precedence over
    OBR-15."""
    for value, system in ((code.code, code.system), (code.alternate_code, code.alternate_system)):
        if not value:
            continue
        if system.upper() in SNOMED_SYSTEMS and value in SNOMED_SPECIMENS:
            return SNOMED_SPECIMENS[value]
        if system.upper() in HL7_SPECIMEN_SYSTEMS and value.upper() in SPECIMENS:
            return SPECIMENS[value.upper()]
    sent = "^".join(p for p in (code.code, code.text, code.system) if p)
    issues.append(
        Issue(
            ErrorCode.TABLE_VALUE_NOT_FOUND,
            f"specimen type {sent!r} is not one of SNOMED CT "
            f"{', '.join(sorted(SNOMED_SPECIMENS))} or HL7 table 0487 "
            f"{', '.join(sorted(SPECIMENS))}",
            Location("SPM", order.specimen_sequence or 1, 4),
        )
    )
    return None


def _result(
    observation: Observation,
    facility: str,
    code_maps: CodeMaps,
    catalog: Catalog,
    issues: list[Issue],
    *,
    panel_status: PanelStatus = "final",
    comment: str | None = None,
) -> ResultIn | None:
    location = Location("OBX", observation.sequence, 3)
    analyte = _analyte(observation, facility, code_maps, catalog, location, issues)
    if analyte is None:
        return None
    range_text = observation.reference_range
    status = HL7_OBX11[observation.status]
    try:
        return ResultIn(
            analyte=analyte,
            value=observation.value,
            unit=observation.units,
            reference_range=LabRangeIn(text=range_text) if range_text else None,
            flag=observation.abnormal_flags[0] if observation.abnormal_flags else None,
            lab_comment=comment[:MAX_COMMENT] if comment else None,
            # Only where it differs from the panel's (so a plain final message hashes as before).
            status=status if status != panel_status else None,
        )
    except ValidationError as exc:
        issues.extend(
            validation_issues(exc, Location("OBR"), [Location("OBX", observation.sequence)], 0)
        )
        return None


def _analyte(
    observation: Observation,
    facility: str,
    code_maps: CodeMaps,
    catalog: Catalog,
    location: Location,
    issues: list[Issue],
) -> str | None:
    """A LOINC code (OBX-3 or its alternate triplet in LN), else the mapped local code."""
    code = observation.code
    for value, system in ((code.code, code.system), (code.alternate_code, code.alternate_system)):
        if value and system.upper() in LOINC_SYSTEMS:
            try:
                catalog.by_loinc(value)
            except DomainError:
                issues.append(
                    Issue(
                        ErrorCode.TABLE_VALUE_NOT_FOUND,
                        f"LOINC code {value} is not an analyte this service accepts",
                        location,
                    )
                )
                return None
            return value
    local = code.code or code.alternate_code
    analyte = code_maps.analyte_for(facility, local)
    if analyte is None:
        issues.append(
            Issue(
                ErrorCode.TABLE_VALUE_NOT_FOUND,
                f"local code {local!r} from facility {facility or '(none)'!r} is not in the "
                "code map; send LOINC or ask for the code to be mapped",
                location,
            )
        )
    return analyte
