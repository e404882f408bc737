"""``demo-data [--org NAME]``: demo patients and panels, posted through the same services as the
API (idempotent)."""

from __future__ import annotations

import argparse
import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.cli.database import in_transaction
from app.core.config import Settings
from app.models.organization import DEFAULT_ORGANIZATION_ID
from app.panels import service as panels
from app.panels.schemas import PanelCreate
from app.patient_context import repository as context_repository
from app.patient_context import service as context_service
from app.patient_context.schemas import PatientContextWrite
from app.patients import repository as patient_repository
from app.patients import service as patients
from app.patients.schemas import PatientCreate
from app.plan_rules import service as rule_sets
from app.ranges import service as ranges
from app.sleep import service as sleep_service
from app.sleep.schemas import SleepAssessmentCreate

DEMO_SYSTEM = "urn:demo:mrn"
DEMO_BASE_DATE = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)

DEMO_PATIENTS: list[dict[str, Any]] = [
    {"mrn": "DEMO-001", "sex": "female", "birth_date": "1981-04-12"},
    {"mrn": "DEMO-002", "sex": "male", "birth_date": "1958-09-30"},
    {"mrn": "DEMO-003", "sex": "unknown", "birth_date": "1995-01-05"},
]

# (mrn, days before DEMO_BASE_DATE, "analyte value unit" results): low magnesium improving, a
# critical calcium, a zinc/copper imbalance.
DEMO_PANELS: list[tuple[str, int, str]] = [
    ("DEMO-001", 90, "magnesium 0.62 mmol/L, calcium 9.2 mg/dL, iron 30 ug/dL, ferritin 12 ng/mL"),
    ("DEMO-001", 10, "magnesium 1.9 mg/dL, calcium 9.4 mg/dL, zinc 58 ug/dL, copper 120 ug/dL"),
    ("DEMO-002", 5, "calcium 13.5 mg/dL, magnesium 1.6 meq/L"),
    ("DEMO-003", 20, "iron 50 ug/dL, zinc <5 umol/L"),
]


async def _demo_patients(session: AsyncSession, org: uuid.UUID) -> int:
    created = 0
    for spec in DEMO_PATIENTS:
        existing = await patient_repository.get_by_identifier(
            session, organization_id=org, system=DEMO_SYSTEM, value=spec["mrn"]
        )
        if existing is not None:
            continue
        identifiers = [{"system": DEMO_SYSTEM, "value": spec["mrn"]}]
        data = {"identifiers": identifiers, "sex": spec["sex"], "birth_date": spec["birth_date"]}
        await patients.create(session, organization_id=org, data=PatientCreate.model_validate(data))
        created += 1
    return created


async def _demo_panels(session: AsyncSession, org: uuid.UUID) -> int:
    created = 0
    for mrn, days_ago, results in DEMO_PANELS:
        # Fixed collection dates keep re-runs idempotent (same accession, same panel).
        collected = DEMO_BASE_DATE - timedelta(days=days_ago)
        data = {
            "patient": {"identifier": {"system": DEMO_SYSTEM, "value": mrn}},
            "source": "demo-lab",
            "accession": f"{mrn}-{days_ago}",
            "collected_at": collected.isoformat(),
            "results": [_demo_result(result) for result in results.split(", ")],
        }
        outcome = await panels.ingest(
            session, organization_id=org, data=PanelCreate.model_validate(data)
        )
        created += int(outcome.created)
    return created


def _demo_result(result: str) -> dict[str, str]:
    analyte, value, unit = result.split()
    return {"analyte": analyte, "value": value, "unit": unit}


async def _demo_organization(session: AsyncSession, org_name: str | None) -> uuid.UUID:
    if org_name is None:
        return DEFAULT_ORGANIZATION_ID
    from app.auth.service import get_or_create_organization

    return (await get_or_create_organization(session, name=org_name)).id


async def load_demo_data(settings: Settings, *, org_name: str | None = None) -> str:
    """Demo patients, panels, ISI scores and a context in the default organization, or in the
    organization named ``org_name`` (created if new, as `create-api-key --org` does)."""

    async def work(session: AsyncSession) -> tuple[int, int, int]:
        org = await _demo_organization(session, org_name)
        await ranges.ensure_default(session, organization_id=org)
        await rule_sets.ensure_default(session, organization_id=org)
        return (
            await _demo_patients(session, org),
            await _demo_panels(session, org),
            await _demo_sleep_and_context(session, org),
        )

    created_patients, created_panels, created_assessments = await in_transaction(settings, work)
    where = f" in {org_name!r}" if org_name else ""
    return (
        f"demo data{where}: {created_patients} patient(s), {created_panels} panel(s) and "
        f"{created_assessments} sleep assessment(s) added"
    )


# (mrn, days before DEMO_BASE_DATE, ISI answers): moderate insomnia improving; severe.
DEMO_SLEEP: list[tuple[str, int, list[int]]] = [
    ("DEMO-001", 90, [3, 3, 2, 3, 3, 2, 3]),
    ("DEMO-001", 10, [2, 2, 1, 2, 2, 1, 2]),
    ("DEMO-002", 5, [4, 3, 3, 4, 3, 3, 4]),
]


async def _demo_sleep_and_context(session: AsyncSession, org: uuid.UUID) -> int:
    """ISI questionnaires and a clinical context for the demo patients, once."""
    created = 0
    for mrn, days_ago, answers in DEMO_SLEEP:
        patient = await patient_repository.get_by_identifier(
            session, organization_id=org, system=DEMO_SYSTEM, value=mrn
        )
        assert patient is not None
        assessed_on = (DEMO_BASE_DATE - timedelta(days=days_ago)).date()
        existing = await sleep_service.search(
            session,
            organization_id=org,
            patient_id=patient.id,
            start=assessed_on,
            end=assessed_on,
            limit=1,
            after=None,
        )
        if existing:
            continue
        await sleep_service.create(
            session,
            patient=patient,
            data=SleepAssessmentCreate(instrument="ISI", assessed_on=assessed_on, items=answers),
            recorded_by="demo-data",
        )
        created += 1
    await _demo_context(session, org)
    return created


async def _demo_context(session: AsyncSession, org: uuid.UUID) -> None:
    patient = await patient_repository.get_by_identifier(
        session, organization_id=org, system=DEMO_SYSTEM, value="DEMO-002"
    )
    assert patient is not None
    if (
        await context_repository.current(session, organization_id=org, patient_id=patient.id)
        is None
    ):
        await context_service.record(
            session,
            patient=patient,
            current=None,
            data=PatientContextWrite.model_validate(
                {
                    "egfr": {"value": 52, "measured_on": "2026-10-20"},
                    "medications": [{"code": "levothyroxine"}, {"code": "thiazide-diuretic"}],
                    "caffeine_servings_per_day": 4,
                }
            ),
            recorded_by="demo-data",
        )


def _demo_data(args: argparse.Namespace, settings: Settings) -> int:
    print(asyncio.run(load_demo_data(settings, org_name=args.org)))
    return 0


def register(commands: Any) -> None:
    demo = commands.add_parser("demo-data", help="add demo patients and panels")
    demo.add_argument(
        "--org", help="organization name (created if new; default: the default organization)"
    )
    demo.set_defaults(handler=_demo_data)
