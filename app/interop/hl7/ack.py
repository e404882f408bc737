"""ACK messages in ER7: MSH (sender and receiver swapped), MSA, and one ERR per issue.

From version 2.5 the error goes in ERR-2 (location), ERR-3 (HL7 error code), ERR-4 (severity)
and ERR-8 (user message); for 2.3 and 2.4 in ERR-1 (location with the code) with the text in
MSA-3. Every text is escaped, so the ACK stays valid ER7 whatever a message contained.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import hl7

from app.interop.hl7.errors import AckCode, Issue
from app.interop.hl7.parser import SUPPORTED_VERSIONS, MessageHeader

RECEIVING_APPLICATION = "MINERAL-LABS"
DEFAULT_VERSION = "2.5.1"
MAX_TEXT = 200  # ERR-8 / MSA-3 are short human-readable texts

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
    message_type = "ACK^R01^ACK" if version not in ("2.3", "2.3.1") else "ACK^R01"
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
        message_type,
        escape(control_id or hl7.generate_message_control_id()),
        escape((header.processing_id if header else "") or "P"),
        version,
    ]
    segments = ["|".join(msh)]
    msa = ["MSA", code, escape(header.control_id if header else "")]
    if issues and not _is_v25(version):
        msa.append(escape(_clip("; ".join(str(issue) for issue in issues))))
    segments.append("|".join(msa))
    segments.extend(_err(issue, version) for issue in issues)
    return "\r".join(segments) + "\r"


def _err(issue: Issue, version: str) -> str:
    code = f"{int(issue.code)}^{escape(issue.code.display)}^HL70357"
    location = issue.location
    if _is_v25(version):
        # ERL: segment id ^ sequence ^ field position ^ field repetition ^ component.
        erl = ""
        if location is not None:
            parts = [location.segment, str(location.sequence)]
            if location.field is not None:
                parts += [str(location.field), "1"]
                if location.component is not None:
                    parts.append(str(location.component))
            erl = "^".join(parts)
        text = escape(_clip(str(issue)))
        return "|".join(["ERR", "", erl, code, issue.severity, "", "", "", text])
    # 2.3 / 2.4 ELD: segment id ^ sequence ^ field position ^ code (CE, as subcomponents).
    eld_code = code.replace("^", "&")
    if location is None:
        return f"ERR|^^^{eld_code}"
    field = "" if location.field is None else str(location.field)
    return f"ERR|{location.segment}^{location.sequence}^{field}^{eld_code}"


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."
