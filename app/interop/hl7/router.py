from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from app.audit.context import audit_target, audited
from app.auth.deps import AUTH_RESPONSES, CanWritePanels
from app.deps import WriteSession
from app.interop.hl7 import service
from app.problems import problem_doc
from app.uploads import UnsupportedMediaTypeError

HL7_MEDIA_TYPE = "x-application/hl7-v2+er7"
ACCEPTED_MEDIA_TYPES = (HL7_MEDIA_TYPE, "text/plain")

ORU_EXAMPLE = (
    "MSH|^~\\&|LIS|ACME-LAB|MINERAL-LABS|CLINIC|20261120093000+0000||ORU^R01^ORU_R01|MSG00001|P|2.5.1\r"
    "PID|1||MRN-0042^^^&2.16.840.1.113883.19.5&ISO^MR||DOE^JANE||19810412|F\r"
    "OBR|1|PL-778|ACC-2026-000123|MINPANEL^Mineral panel^L|||20261120083000+0000\r"
    "OBX|1|NM|2601-3^Magnesium [Moles/volume] in Serum or Plasma^LN||0.62|mmol/L|0.70-1.00|L|||F\r"
    "OBX|2|NM|CA^Calcium^L||9.1|mg/dL|8.6-10.3|N|||F\r"
    "OBX|3|SN|ZN^Zinc^L||<^10|ug/dL|60-120||||F\r"
)
ACK_EXAMPLE = (
    "MSH|^~\\&|MINERAL-LABS|CLINIC|LIS|ACME-LAB|20261120093001+0000||ACK^R01^ACK|"
    "26324093001123456ABCD|P|2.5.1\rMSA|AA|MSG00001\r"
)
ACK_ERROR_EXAMPLE = (
    "MSH|^~\\&|MINERAL-LABS|CLINIC|LIS|ACME-LAB|20261120093001+0000||ACK^R01^ACK|"
    "26324093001123456ABCE|P|2.5.1\rMSA|AE|MSG00002\r"
    "ERR||OBX^2^3^1|103^Table value not found^HL70357|E||||OBX[2]-3: local code 'XYZ' from "
    "facility 'ACME-LAB' is not in the code map; send LOINC or ask for the code to be mapped\r"
)


router = APIRouter(tags=["hl7v2"], responses=AUTH_RESPONSES)


def _er7_body() -> dict[str, Any]:
    schema = {"type": "string", "description": "ER7 text: segments separated by CR (or LF)."}
    return {
        "requestBody": {
            "required": True,
            "content": {
                HL7_MEDIA_TYPE: {"schema": schema, "example": ORU_EXAMPLE},
                "text/plain": {"schema": schema, "example": ORU_EXAMPLE},
            },
        }
    }


@router.post(
    "/api/v1/hl7/oru",
    summary="Post HL7 v2 ORU^R01 results",
    response_class=Response,
    responses={
        200: {
            "description": "The ACK of each message (AA stored, AE / AR refused with ERR), "
            "in order, concatenated.",
            "content": {
                HL7_MEDIA_TYPE: {
                    "schema": {"type": "string"},
                    "examples": {
                        "accepted": {"value": ACK_EXAMPLE},
                        "refused": {"value": ACK_ERROR_EXAMPLE},
                    },
                }
            },
        },
        413: problem_doc("The request body exceeds the configured limit."),
        415: problem_doc(f"The body is not `{HL7_MEDIA_TYPE}` or `text/plain`."),
        500: problem_doc("Unexpected server error (details are logged, never returned)."),
    },
    openapi_extra=_er7_body(),
    dependencies=[Depends(audited("create", "panel"))],
)
async def post_oru(request: Request, session: WriteSession, principal: CanWritePanels) -> Response:
    """Stores lab results sent as HL7 v2 **ORU^R01** messages (versions 2.3 to 2.5.1, ER7
    encoding) and answers with HL7 acknowledgements, exactly as the JSON API would store them:
    the same validation, unit conversion, interpretation and dedupe.

    **Body.** One message, several messages one after the other, or a batch (`FHS`/`BHS` …
    `BTS`/`FTS`). Segments are separated by CR; LF and CRLF are accepted too.
    Content type `x-application/hl7-v2+er7` or `text/plain` (UTF-8 unless `charset` says
    otherwise).

    **Mapping.** `PID-3` identifiers (system = the assigning authority: `urn:oid:<universal id>`
    for an ISO OID, else the namespace id) find the patient; a patient not yet known is created
    from `PID-3`, `PID-7` (birth date) and `PID-8` (sex). Each `OBR` is one panel: its
    accession is `OBR-3` (filler order number), else `OBR-2`; its source is `MSH-3^MSH-4`;
    `OBR-7` is the collection time (without a UTC offset it is read in the facility's configured
    time zone, UTC by default); `OBR-15` (or `SPM-4`) the specimen (default serum). Each `OBX`
    (value type `NM`, `SN` or `ST`) is one result: `OBX-3` in LOINC (`LN`), or a local code
    mapped for the sending facility (your `/api/v1/code-maps`, then built-in defaults);
    `OBX-5` the value (comparators such as `<0.5` or SN `<^0.5` kept); `OBX-6` the unit;
    `OBX-7` the lab's range text; `OBX-8` its flag. Other segments (ORC, NTE, PV1,
    Z-segments, ...) are ignored.

    **Status.** `OBX-11` `F` final, `P` preliminary (the panel is stored as preliminary). A
    panel re-sent with a result marked `C` (correction), or a final panel after a preliminary
    one, updates the stored results; the previous values stay in the panel's history under
    `/interpretations`.

    **Acknowledgement.** Always **200** with one ACK per message, in order: `MSA-1` `AA` when
    the message is stored, `AE` when its content is wrong (unknown code, unit or specimen,
    missing or malformed field, truncated message), `AR` when it is not taken at all (not
    ORU^R01, unsupported version, unreadable MSH, temporary failure: resend). `ERR` segments
    say what and where (`ERR-2` location, `ERR-3` HL7 table 0357 code, `ERR-8` text; `ERR-1`
    and `MSA-3` for 2.3 and 2.4). A refused message stores **nothing**; in a batch the other
    messages are still stored.

    **Safe to resend.** `MSH-3^MSH-4` + accession identify a panel: the same message sent again
    answers `AA` and stores nothing new."""
    content_type = request.headers.get("content-type", "")
    media_type, _, parameters = content_type.partition(";")
    if media_type.strip().lower() not in ACCEPTED_MEDIA_TYPES:
        raise UnsupportedMediaTypeError(
            f"Send the messages as `{HL7_MEDIA_TYPE}` or `text/plain`.",
            accepted=list(ACCEPTED_MEDIA_TYPES),
        )
    text = _decode(await request.body(), parameters)
    outcomes = await service.receive(session, organization_id=principal.organization_id, text=text)
    stored = [panel for outcome in outcomes for panel in outcome.panels]
    if stored:
        first = stored[0]
        audit_target(
            request,
            resource_id=first.panel_id,
            patient_id=first.patient_id,
            action="read" if all(p.change == "unchanged" for p in stored) else "create",
        )
    return Response(service.ack_of(outcomes), media_type=HL7_MEDIA_TYPE)


def _decode(body: bytes, parameters: str) -> str:
    charset = "utf-8"
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip('"')
    try:
        return body.decode(charset)
    except (LookupError, UnicodeDecodeError):
        # HL7 v2's default character set is ASCII / ISO 8859-1; never refuse a body for it.
        return body.decode("latin-1")
