"""The status of one result (FHIR ``Observation.status``, HL7 v2 OBX-11): what it means here.

Statuses stored per result: ``preliminary``, ``final``, ``corrected``, ``amended`` (current
results) and ``cancelled``, ``entered-in-error`` (withdrawn results). A withdrawn result is
kept for the record and shown, with its status, when the panel itself is read; it is never
critical (``critical`` / ``possibly_critical`` are stored False, the note says why) and never
used as current: not in the panel's critical summary, trends, ratios, the timeline or plans.
"""

from __future__ import annotations

from typing import Final, Literal

ResultStatus = Literal[
    "preliminary", "final", "corrected", "amended", "cancelled", "entered-in-error"
]
RESULT_STATUSES: Final = (
    "preliminary",
    "final",
    "corrected",
    "amended",
    "cancelled",
    "entered-in-error",
)
WITHDRAWN: Final = frozenset({"cancelled", "entered-in-error"})
# Statuses that change a result stored earlier: a plan resting on that result needs review.
REVISING: Final = frozenset({"corrected", "amended", "cancelled", "entered-in-error"})

# FHIR R4 Observation.status (required binding, http://hl7.org/fhir/observation-status).
# `registered` (no result yet) and `unknown` (the sender does not know) carry no value that can
# be interpreted safely: refused, naming the status.
FHIR_OBSERVATION_STATUS: Final[dict[str, ResultStatus]] = {
    "preliminary": "preliminary",
    "final": "final",
    "amended": "amended",
    "corrected": "corrected",
    "cancelled": "cancelled",
    "entered-in-error": "entered-in-error",
}
FHIR_REFUSED: Final = {
    "registered": "the Observation is registered but has no result yet; send it when it is "
    "preliminary or final",
    "unknown": "the sender does not know the Observation's status; a result of unknown status "
    "cannot be interpreted safely",
}

# HL7 v2 table 0085 (observation result status codes interpretation), OBX-11:
#   P  preliminary                                  -> preliminary
#   F  final                                        -> final
#   C  correction of a result sent before           -> corrected
#   W  "post original as wrong" (sent in error)     -> entered-in-error
#   D  "deletes the OBX record"                     -> entered-in-error
#   X  "results cannot be obtained"                 -> cancelled
#   R  "results entered, not verified"              -> preliminary (a value exists, unverified:
#                                                      never treated as final)
#   S  "partial results"                            -> preliminary
# Refused (the OBX carries no result to store): I (specimen in lab, results pending),
# O (order detail only), N (not asked), U (status change to final without the result: the
# earlier result would have to be found and re-stated; send F with the value instead).
HL7_OBX11: Final[dict[str, ResultStatus]] = {
    "P": "preliminary",
    "F": "final",
    "C": "corrected",
    "W": "entered-in-error",
    "D": "entered-in-error",
    "X": "cancelled",
    "R": "preliminary",
    "S": "preliminary",
}
# OBX-11 codes whose OBX may come without a value (OBX-5) or unit (OBX-6).
HL7_WITHDRAWING: Final = frozenset({"W", "D", "X"})


def is_withdrawn(status: str | None) -> bool:
    return status in WITHDRAWN


def withdrawn_note(status: str) -> str:
    return (
        f"result {status}: kept for the record; not current, not critical, not used for "
        "trends, ratios or plans"
    )
