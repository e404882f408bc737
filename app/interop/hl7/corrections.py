"""HL7 v2 corrections through the panels' one correction path (``app.panels.corrections``).

An HL7 sender corrects a result by re-sending the panel with the corrected OBX marked ``C``
(the panel is then ``corrected``), completes a preliminary panel by re-sending it with ``F``,
and withdraws a result with ``W`` / ``D`` / ``X``: with a value, the result is stored withdrawn
like any other correction; without one, the stored result of its analyte is withdrawn
(``withdraw_results``). What counts as a correction, how the stored panel changes, its kept
history and the plans flagged for review are the same as for the native JSON API and FHIR.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from app.domain.catalog import Catalog
from app.models.panel import Panel
from app.panels import corrections
from app.panels.corrections import WithdrawOutcome, withdraw_results
from app.panels.schemas import PanelCreate, PanelOut
from app.panels.service import payload_hash

SOURCE_FORMAT = "hl7v2"

__all__ = ["SOURCE_FORMAT", "WithdrawOutcome", "correct_panel", "is_update", "withdraw_results"]


def is_update(stored: Panel, data: PanelCreate, patient_id: uuid.UUID) -> bool:
    """Whether the re-sent panel ``data`` is to be applied to ``stored`` as a correction
    (different content that ``app.panels.corrections.correction_kind`` accepts)."""
    return (
        stored.payload_hash != payload_hash(data, SOURCE_FORMAT, patient_id)
        and corrections.correction_kind(stored.status, data) is not None
    )


async def correct_panel(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID,
    panel_id: uuid.UUID,
    data: PanelCreate,
    reason: str,
    catalog: Catalog | None = None,
) -> PanelOut:
    """Apply the re-sent panel to the stored one: results of the same analyte are replaced,
    new analytes added, analytes not re-sent kept as they were."""
    return await corrections.correct_panel(
        session,
        organization_id=organization_id,
        panel_id=panel_id,
        data=data,
        reason=reason,
        source_format=SOURCE_FORMAT,
        catalog=catalog,
    )
