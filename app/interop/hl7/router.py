from __future__ import annotations

import functools
import logging
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.routing import APIRoute
from starlette.types import Receive, Scope, Send

from app.audit.context import audited
from app.auth.deps import AUTH_RESPONSES, CanWritePanels
from app.core.deps import AuditedSession, SettingsDep
from app.core.errors import DATABASE_RETRY_AFTER_SECONDS, AppError, is_database_unavailable
from app.interop.hl7 import audit as hl7_audit
from app.interop.hl7 import intake, service
from app.interop.hl7.ack import answer_body, build_ack
from app.interop.hl7.errors import ErrorCode, Issue, ParseError
from app.interop.hl7.parser import read_header, split_messages
from app.kit.problems import problem_doc
from app.kit.uploads import UnsupportedMediaTypeError
from app.ops import metrics

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


log = logging.getLogger("app.interop.hl7")

# Bodies this large are parsed and mapped in a worker thread, so one big message never holds
# the event loop (and every other sender's request) while it is read.
OFFLOAD_BYTES = 64 * 1024


class TooManySegmentsError(
    AppError, status=413, slug="too-many-segments", title="Too many HL7 segments"
): ...


async def _unavailable_ack(request: Request, exc: Exception) -> Response:
    """The database is down: an AR ACK per message ("not taken, resend later") with 503 and
    Retry-After, wherever the failure happened (authentication, the session, the commit)."""
    log.warning("database unavailable on the HL7 route: %s", type(exc).__name__)
    issue = Issue(
        ErrorCode.INTERNAL_ERROR,
        "the database is unavailable; resend the message later (a message resent with the "
        "same MSH-10 is never stored twice)",
    )
    text = ""
    try:
        text = _decode(await request.body(), request.headers.get("content-type", ""))
        messages = split_messages(text)
    except Exception:  # an unreadable body: one AR without an echoed header
        messages = []
    acks = []
    for message in messages[:100] or [""]:
        try:
            header = read_header(message) if message else None
        except ParseError:
            header = None
        acks.append(build_ack(header, "AR", [issue]))
    return Response(
        answer_body(acks, text),
        status_code=503,
        media_type=HL7_MEDIA_TYPE,
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
    )


class Hl7Route(APIRoute):
    """The HL7 route answers a database outage with AR ACKs; every other error keeps the app's
    problem+json handlers."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        handlers, status_handlers = scope.get("starlette.exception_handlers", ({}, {}))

        async def on_error(request: Request, exc: Exception) -> Response:
            if is_database_unavailable(exc):
                return await _unavailable_ack(request, exc)
            for cls in type(exc).__mro__:
                if cls in handlers and cls is not Exception:
                    response: Response = await handlers[cls](request, exc)
                    return response
            raise exc

        # Every key routes through on_error: Starlette picks the first class in the
        # exception's MRO that has a handler (OSError's would win over Exception's).
        ours = dict.fromkeys([*handlers, Exception], on_error)
        scope["starlette.exception_handlers"] = (ours, status_handlers)
        await super().handle(scope, receive, send)


router = APIRouter(tags=["hl7v2"], responses=AUTH_RESPONSES, route_class=Hl7Route)


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
        413: problem_doc(
            "The body exceeds the configured size (`MINERAL_MAX_BODY_BYTES`) or segment count "
            "(`MINERAL_HL7_MAX_SEGMENTS`); nothing was stored."
        ),
        415: problem_doc(f"The body is not `{HL7_MEDIA_TYPE}` or `text/plain`."),
        500: problem_doc("Unexpected server error (details are logged, never returned)."),
        503: {
            "description": "The database is unavailable: an `AR` ACK per message and "
            "`Retry-After`. Resend later; a resent message (same MSH-10) is never stored twice.",
            "content": {HL7_MEDIA_TYPE: {"schema": {"type": "string"}}},
        },
    },
    openapi_extra=_er7_body(),
    dependencies=[Depends(audited("create", "panel"))],
)
async def post_oru(
    request: Request, session: AuditedSession, principal: CanWritePanels, settings: SettingsDep
) -> Response:
    """Stores lab results sent as HL7 v2 **ORU^R01** messages (versions 2.3 to 2.5.1, ER7
    encoding) and answers with HL7 acknowledgements, exactly as the JSON API would store them:
    the same validation, unit conversion, interpretation and dedupe.

    **Body.** One message, several messages one after the other, or a batch (`FHS`/`BHS` …
    `BTS`/`FTS`). Segments are separated by CR; LF and CRLF are accepted too.
    Content type `x-application/hl7-v2+er7` or `text/plain` (UTF-8 unless `charset` says
    otherwise).

    **Patient.** Only `PID-3` identifiers that are *matching keys* find the patient: type
    (`CX-5`) `MR` or `PI` (HL7 table 0203), system = the assigning authority (`urn:oid:<universal
    id>` for an ISO OID, else the namespace id, else the sending facility's own namespace),
    never `SS` and never a placeholder value such as `000-00-0000` (deployment-configurable,
    `app/data/patient_matching.yaml`). A patient not yet known is created from those keys,
    `PID-7` (birth date) and `PID-8` (sex); other identifiers are not kept. `AE`, nothing
    stored, when no identifier is a matching key, when the keys name different patients
    (`PID-3`), or when the patient they name has another recorded birth date (`PID-7`) or sex
    (`PID-8`); unknown on either side is not a contradiction.

    **Mapping.** Each `OBR` is one panel: its
    accession is `OBR-3` (filler order number), else `OBR-2`; its source is `MSH-3^MSH-4`;
    `OBR-7` is the collection time (without a UTC offset it is read in the facility's configured
    time zone, UTC by default); `SPM-4` (SNOMED CT `119364003` serum, `119361006` plasma,
    `258580003` whole blood, `119351004` erythrocytes, or HL7 table 0487 `SER`, `PLAS`, `BLD`,
    `RBC`), else `OBR-15`, the specimen (default serum). Each `OBX`
    (value type `NM`, `SN` or `ST`) is one result: `OBX-3` in LOINC (`LN`), or a local code
    mapped for the sending facility (your `/api/v1/code-maps`, then built-in defaults);
    `OBX-5` the value (comparators such as `<0.5` or SN `<^0.5` kept); `OBX-6` the unit;
    `OBX-7` the lab's range text; `OBX-8` its flag. The lab's comments are kept with the result
    (`lab.comment`, FHIR `Observation.note`): `NTE` after its `OBX`; `NTE` after the `OBR`,
    narrative `OBX` (`TX`, `FT`) and coded ones that are not numbers (`CE`, `CWE`) on the
    numeric result before them (the first one when they come first); a `CE` / `CWE` whose code
    is a number is a result like `ST`. Other segments (ORC, PV1, Z-segments, ...) are ignored.

    **Status.** `OBX-11` `F` final, `P` preliminary (the panel is stored as preliminary). A
    panel re-sent with a result marked `C` (correction), or a final panel after a preliminary
    one, updates the stored results; the previous values stay in the panel's history under
    `/interpretations`.

    **Acknowledgement.** Always **200** with one ACK per message, in order: `MSA-1` `AA` when
    the message is stored, `AE` when its content is wrong (unknown code, unit or specimen,
    missing or malformed field, truncated message), `AR` when it is not taken at all (not
    ORU^R01, unsupported version, unreadable MSH, temporary failure: resend). `ERR` segments
    say what and where: in 2.5 / 2.5.1 one `ERR` per problem (`ERR-2` location, `ERR-3` HL7
    table 0357 code, `ERR-4` severity, `ERR-8` text); in 2.3 / 2.4 one `ERR` whose `ERR-1`
    repeats per problem, the text in `MSA-3` (80 characters). `MSH-9` echoes the trigger event
    (`ACK^R01^ACK`). `MSH-16` (application acknowledgment type) `NE`, `ER` on success or `SU` on
    a refusal: the accept acknowledgment (`CA` / `CE` / `CR`) is sent instead, since every
    message is always answered. A batch (`BHS`) is answered with a batch: `FHS` (when sent) /
    `BHS` ... `BTS` (count of ACKs) / `FTS`. A refused message stores **nothing**; in a batch
    the other messages are still stored. A batch of more than 500 messages is committed 500
    messages at a time, so a failure part-way keeps the messages of the chunks before it.

    **Safe to resend.** `MSH-3^MSH-4` + accession identify a panel: the same message sent again
    answers `AA` and stores nothing new.

    **Limits.** A body over `MINERAL_MAX_BODY_BYTES` or with more than
    `MINERAL_HL7_MAX_SEGMENTS` segments is refused whole with **413** (nothing stored); large
    bodies are parsed off the event loop, so they never hold up other senders.

    **Database outage.** **503** with `Retry-After` and an `AR` ACK per message: nothing
    was taken. A message whose storing was cut off by the outage may or may not be stored (in
    a batch of more than 500 messages, the chunks committed before it are); resend the body
    unchanged: the same MSH-10 is acknowledged `AA` and never stored twice."""
    content_type = request.headers.get("content-type", "")
    media_type, _, parameters = content_type.partition(";")
    if media_type.strip().lower() not in ACCEPTED_MEDIA_TYPES:
        raise UnsupportedMediaTypeError(
            f"Send the messages as `{HL7_MEDIA_TYPE}` or `text/plain`.",
            accepted=list(ACCEPTED_MEDIA_TYPES),
        )
    text = _decode(await request.body(), parameters)
    segments = intake.segment_count(text)
    if segments > settings.hl7_max_segments:
        raise TooManySegmentsError(
            f"The body has {segments} segments; at most {settings.hl7_max_segments} are "
            "accepted in one request. Send the messages in smaller batches; nothing was stored."
        )
    received = await intake.receive_and_keep(
        session,
        principal,
        text=text,
        channel="hl7-http",
        offload_bytes=OFFLOAD_BYTES,
        audit_rows=functools.partial(
            hl7_audit.entries, hl7_audit.template(principal, scope=request.scope)
        ),
        retention_days=settings.refused_input_retention_days,
    )
    # One row per patient touched, each with its message's real outcome (AE / AR: error).
    hl7_audit.audit_http(request, received.unaudited)
    metrics.count_acks("http", (outcome.ack_code for outcome in received.outcomes))
    return Response(service.ack_of(received.outcomes, text), media_type=HL7_MEDIA_TYPE)


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
