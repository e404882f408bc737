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

from app.models.panel import Panel
from app.panels import corrections
from app.panels.corrections import WithdrawOutcome, correct_panel, withdraw_results
from app.panels.schemas import PanelCreate
from app.panels.service import payload_hash

SOURCE_FORMAT = "hl7v2"

# correct_panel and withdraw_results are the panels' own, re-exported: the service passes
# ``source_format=SOURCE_FORMAT`` to them itself (no wrapper that only fixes an argument).
__all__ = ["SOURCE_FORMAT", "WithdrawOutcome", "correct_panel", "is_update", "withdraw_results"]


def is_update(stored: Panel, data: PanelCreate, patient_id: uuid.UUID) -> bool:
    """Whether the re-sent panel ``data`` is to be applied to ``stored`` as a correction
    (different content that ``app.panels.corrections.correction_kind`` accepts)."""
    return (
        stored.payload_hash != payload_hash(data, SOURCE_FORMAT, patient_id)
        and corrections.correction_kind(stored.status, data) is not None
    )
