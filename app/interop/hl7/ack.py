"""ACK messages in ER7, to the letter of each version: MSH (sender and receiver swapped, the
trigger event echoed), MSA, and the errors.

- 2.5 and 2.5.1: one ERR per issue, ERR-2 (location, ERL), ERR-3 (HL7 table 0357 code),
  ERR-4 (severity) and ERR-8 (user message, at most 250 characters).
- 2.3, 2.3.1 and 2.4: at most **one** ERR segment (the ACK structure allows no more), whose
  ERR-1 (ELD: segment ^ sequence ^ field ^ code&text&table) repeats once per issue; the text
  goes in MSA-3, which is 80 characters in those versions.

MSH-9 echoes the trigger event of the acknowledged message (``ACK^R01^ACK``, ``ACK^A01^ACK``;
``ACK^R01`` in 2.3, whose message type has no structure component). Every text is escaped, so
the ACK stays valid ER7 whatever a message contained.

MSH-15 / MSH-16 (accept / application acknowledgment type, HL7 table 0155 AL, NE, ER, SU):
HTTP and MLLP are answered synchronously, one ACK per message, always. When MSH-16 asks for
the application acknowledgment in this case (empty, AL, ER on a refusal, SU on success) it is
sent (MSA-1 AA / AE / AR); otherwise the accept acknowledgment is sent instead (MSA-1 CA / CE
/ CR with the same errors), also when MSH-15 is NE: a silent answer would look like a lost
connection to the sender, and the accept ACK tells it truthfully that nothing more will come.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import hl7

from app.interop.hl7.errors import AckCode, Issue
from app.interop.hl7.parser import SUPPORTED_VERSIONS, BatchHeader, MessageHeader, batch_header

RECEIVING_APPLICATION = "MINERAL-LABS"
DEFAULT_VERSION = "2.5.1"
DEFAULT_EVENT = "R01"  # the only event this receiver takes; used when MSH-9.2 is unreadable
MAX_ERR_TEXT = 250  # ERR-8 user message (TX 250) in 2.5 / 2.5.1
MAX_MSA_TEXT = 80  # MSA-3 text message (ST 80) in 2.3 / 2.4
MAX_CONTROL_ID = 20  # MSH-10 / MSA-2 (ST 20) up to 2.5.1
# The accept (commit) acknowledgment that stands in for an application ACK not asked for.
_COMMIT = {"AA": "CA", "AE": "CE", "AR": "CR"}

_ESCAPES = {"\\": "\\E\\", "|": "\\F\\", "^": "\\S\\", "&": "\\T\\", "~": "\\R\\"}


def escape(text: str) -> str:
    """``text`` as an ER7 value with the standard encoding characters (``|^~\\&``)."""
    flat = " ".join(text.split())  # no CR/LF (segment separators) or other control whitespace
    flat = "".join(ch for ch in flat if ch.isprintable())
    return "".join(_ESCAPES.get(ch, ch) for ch in flat)


def _version(header: MessageHeader | None) -> str:
    if header is not None and header.version in SUPPORTED_VERSIONS:
        return header.version
    return DEFAULT_VERSION


def _is_v25(version: str) -> bool:
    return version in ("2.5", "2.5.1")


def _message_type(header: MessageHeader | None, version: str) -> str:
    event = header.trigger_event if header is not None else ""
    event = event if event.isalnum() and len(event) <= 3 else DEFAULT_EVENT
    return f"ACK^{event}" if version == "2.3" else f"ACK^{event}^ACK"


def acknowledgment_code(header: MessageHeader | None, code: AckCode) -> str:
    """MSA-1: ``code`` (the application ACK) unless MSH-16 says the sender does not want it
    for this outcome; then the accept ACK (CA / CE / CR) stands in (see the module text)."""
    wanted = header.application_ack_type.upper() if header is not None else ""
    if (
        wanted in ("", "AL")
        or (wanted == "ER" and code != "AA")
        or (wanted == "SU" and code == "AA")
    ):
        return code
    return _COMMIT[code]


def build_ack(
    header: MessageHeader | None,
    code: AckCode,
    issues: Sequence[Issue] = (),
    *,
    now: datetime | None = None,
    control_id: str | None = None,
) -> str:
    """The ACK for one message (``header`` None when even the MSH was unreadable)."""
    version = _version(header)
    moment = (now or datetime.now(UTC)).strftime("%Y%m%d%H%M%S+0000")
    sender_app = header.receiving_application if header else ""
    msh = [
        "MSH",
        "^~\\&",
        escape(sender_app or RECEIVING_APPLICATION),
        escape(header.receiving_facility if header else ""),
        escape(header.sending_application if header else ""),
        escape(header.sending_facility if header else ""),
        moment,
        "",
        _message_type(header, version),
        escape(control_id or hl7.generate_message_control_id())[:MAX_CONTROL_ID],
        escape((header.processing_id if header else "") or "P"),
        version,
    ]
    segments = ["|".join(msh)]
    msa = ["MSA", acknowledgment_code(header, code), escape(header.control_id if header else "")]
    if _is_v25(version):
        segments.append("|".join(msa))
        segments.extend(_err_v25(issue) for issue in issues)
    else:
        if issues:
            msa.append(_clip_escaped("; ".join(str(issue) for issue in issues), MAX_MSA_TEXT))
        segments.append("|".join(msa))
        if issues:
            segments.append("ERR|" + "~".join(_eld(issue) for issue in issues))
    return "\r".join(segments) + "\r"


def _code(issue: Issue, separator: str) -> str:
    return separator.join([str(int(issue.code)), escape(issue.code.display), "HL70357"])


def _err_v25(issue: Issue) -> str:
    # ERL: segment id ^ sequence ^ field position ^ field repetition ^ component.
    location = issue.location
    erl = ""
    if location is not None:
        parts = [location.segment, str(location.sequence)]
        if location.field is not None:
            parts += [str(location.field), "1"]
            if location.component is not None:
                parts.append(str(location.component))
        erl = "^".join(parts)
    text = _clip_escaped(str(issue), MAX_ERR_TEXT)
    return "|".join(["ERR", "", erl, _code(issue, "^"), issue.severity, "", "", "", text])


def _eld(issue: Issue) -> str:
    # 2.3 / 2.4 ELD: segment id ^ sequence ^ field position ^ code (CE, as subcomponents).
    location = issue.location
    if location is None:
        return f"^^^{_code(issue, '&')}"
    field = "" if location.field is None else str(location.field)
    return f"{location.segment}^{location.sequence}^{field}^{_code(issue, '&')}"


def _clip_escaped(text: str, limit: int) -> str:
    """``text`` escaped, at most ``limit`` characters *as sent* (escapes count, and are never
    cut in half)."""
    out = ""
    flat = escape(text)
    if len(flat) <= limit:
        return flat
    for ch in text:
        piece = escape(ch)
        if len(out) + len(piece) > limit - 3:
            break
        out += piece
    return out.rstrip() + "..."


def answer_body(acks: Sequence[str], received: str) -> str:
    """The answer to a body: its ACKs in order, wrapped in FHS / BHS ... BTS / FTS when the
    body ``received`` was a batch (began with FHS or BHS)."""
    batch = batch_header(received) if received else None
    return wrap_batch(batch, acks) if batch is not None else "".join(acks)


def wrap_batch(batch: BatchHeader, acks: Sequence[str], *, now: datetime | None = None) -> str:
    """The ACKs in FHS / BHS ... BTS / FTS: BHS-12 / FHS-12 reference the batch and file that
    were received; BTS-1 counts the ACKs, FTS-1 the batches (one)."""
    moment = (now or datetime.now(UTC)).strftime("%Y%m%d%H%M%S+0000")
    ours = escape(batch.receiving_application or RECEIVING_APPLICATION)

    def header(name: str, reference: str) -> str:
        fields = [
            name,
            "^~\\&",
            ours,
            escape(batch.receiving_facility),
            escape(batch.sending_application),
            escape(batch.sending_facility),
            moment,
            "",
            "",
            "",
            escape(hl7.generate_message_control_id())[:MAX_CONTROL_ID],
            escape(reference)[:MAX_CONTROL_ID],
        ]
        return "|".join(fields)

    segments: list[str] = []
    if batch.file_control_id is not None:
        segments.append(header("FHS", batch.file_control_id))
    segments.append(header("BHS", batch.batch_control_id))
    body = "".join(acks)
    tail = [f"BTS|{len(acks)}"]
    if batch.file_control_id is not None:
        tail.append("FTS|1")
    return "\r".join(segments) + "\r" + body + "\r".join(tail) + "\r"
