"""A patient's results over time: one analyte's trend, one ratio's history."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from decimal import Decimal
from typing import cast

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import NotFoundError
from app.domain.catalog import Analyte, default_catalog
from app.domain.errors import DomainError
from app.domain.result_status import ResultStatus
from app.domain.units import convert
from app.kit.pagination import keyset
from app.models.panel import Result
from app.panels import repository
from app.panels.schemas import RatioHistoryOut, RatioPointOut, TrendOut, TrendPointOut
from app.panels.service import InvalidQueryError, require_patient
from app.ranges import service as ranges


async def analyte_history(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    patient_id: uuid.UUID,
    analyte: str,
    unit: str | None,
    collected_from: datetime | None,
    collected_to: datetime | None,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> TrendOut:
    """A patient's results for one analyte, oldest first, in the canonical or requested unit."""
    await require_patient(session, organization_id=organization_id, patient_id=patient_id)
    catalog = default_catalog()
    try:
        spec = catalog.resolve(analyte)
    except DomainError as exc:
        message = str(exc)
        if _RATIO_CODE.fullmatch(analyte) and analyte.endswith("_molar"):
            message += (
                f" `{analyte}` looks like a ratio: its history is at "
                f"/api/v1/patients/{{patient_id}}/ratios/{analyte}/history."
            )
        raise InvalidQueryError(
            message, errors=[{"field": "path.analyte", "message": message}]
        ) from exc
    target = spec.canonical_unit
    if unit is not None:
        try:
            target = catalog.normalize_unit_for(spec, unit)
            convert(Decimal(1), analyte=spec, from_unit=spec.canonical_unit, to_unit=target)
        except DomainError as exc:
            raise InvalidQueryError(
                str(exc), errors=[{"field": "query.unit", "message": str(exc)}]
            ) from exc
    window = repository.PatientWindow(organization_id, patient_id, collected_from, collected_to)
    results = await repository.history_for_analyte(
        session, window, analyte=spec.code, limit=limit + 1, after=after
    )
    # Cheap: one count on the (patient, analyte, collected_at) index.
    total = await repository.count_history_for_analyte(session, window, analyte=spec.code)
    page = keyset(results, limit, lambda r: (r.collected_at, r.id))
    return TrendOut(
        analyte=spec.code,
        unit=target,
        total=total,
        items=[_trend_point(r, spec, target) for r in page.rows],
        limit=limit,
        next_cursor=page.next_cursor,
    )


def _trend_point(result: Result, spec: Analyte, unit: str) -> TrendPointOut:
    """One chart point: the value and the limits that applied to it (the result's stored
    range snapshot, which is in the canonical unit), both in ``unit``."""
    snapshot = result.reference_range or {}
    from_unit = snapshot.get("unit") or result.canonical_unit

    def limit_of(key: str) -> Decimal | None:
        raw = snapshot.get(key)
        if raw is None:
            return None
        return convert(Decimal(str(raw)), analyte=spec, from_unit=from_unit, to_unit=unit)

    return TrendPointOut(
        result_id=result.id,
        panel_id=result.panel_id,
        collected_at=result.collected_at,
        value=convert(
            result.canonical_value, analyte=spec, from_unit=result.canonical_unit, to_unit=unit
        ),
        comparator=result.comparator,
        unit=unit,
        interpretation=result.interpretation,
        critical=result.critical,
        possibly_critical=result.possibly_critical,
        status=cast(ResultStatus, result.status),
        reference_low=limit_of("low"),
        reference_high=limit_of("high"),
        critical_low=limit_of("critical_low"),
        critical_high=limit_of("critical_high"),
    )


_RATIO_CODE = re.compile(r"[a-z0-9_]{1,50}")


async def ratio_history(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    patient_id: uuid.UUID,
    code: str,
    collected_from: datetime | None,
    collected_to: datetime | None,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None,
) -> RatioHistoryOut:
    """One ratio (e.g. `ca_mg_molar`) per panel of the patient that has it, newest first, with
    the ratio's reference interval that applied to that panel."""
    await require_patient(session, organization_id=organization_id, patient_id=patient_id)
    rows = await repository.panel_ratios_of_patient(
        session,
        repository.PatientWindow(organization_id, patient_id, collected_from, collected_to),
    )
    found = [
        (panel_id, collected_at, ratio)
        for panel_id, collected_at, ratios in rows
        for ratio in ratios or []
        if ratio.get("code") == code
    ]
    display = found[0][2].get("display", code) if found else None
    if display is None:
        active = await ranges.active_compiled(session, organization_id=organization_id)
        defined = {r.code: r.display for r in active.ratios} if active else {}
        if code not in defined:
            known = ", ".join(sorted(defined)) or "none"
            raise NotFoundError(
                f"No panel of this patient has the ratio `{code}`, and the active "
                f"reference-range set does not define it (it defines: {known})."
            )
        display = defined[code]
    total = len(found)
    if after is not None:
        moment, last_id = after
        found = [f for f in found if f[1] < moment or (f[1] == moment and f[0] < last_id)]
    page = keyset(found, limit, lambda f: (f[1], f[0]))
    return RatioHistoryOut(
        code=code,
        display=display,
        total=total,
        items=[
            RatioPointOut(
                panel_id=panel_id,
                collected_at=collected_at,
                value=_dec(ratio.get("value")),
                interpretation=ratio.get("interpretation"),
                low=_dec(ratio.get("low")),
                high=_dec(ratio.get("high")),
                note=ratio.get("note"),
            )
            for panel_id, collected_at, ratio in page.rows
        ],
        limit=limit,
        next_cursor=page.next_cursor,
    )


def _dec(value: object) -> Decimal | None:
    return None if value is None else Decimal(str(value))
