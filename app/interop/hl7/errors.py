"""What can be wrong with an HL7 v2 message, in HL7's own terms (table 0357 error codes and an
error location), so the ACK tells the sending interface exactly which segment and field to fix."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal

AckCode = Literal["AA", "AE", "AR"]


class ErrorCode(IntEnum):
    """HL7 table 0357 (message error condition codes)."""

    SEGMENT_SEQUENCE = 100
    REQUIRED_FIELD_MISSING = 101
    DATA_TYPE = 102
    TABLE_VALUE_NOT_FOUND = 103
    UNSUPPORTED_MESSAGE_TYPE = 200
    UNSUPPORTED_EVENT = 201
    UNSUPPORTED_PROCESSING_ID = 202
    UNSUPPORTED_VERSION = 203
    UNKNOWN_KEY = 204
    DUPLICATE_KEY = 205
    RECORD_LOCKED = 206
    INTERNAL_ERROR = 207

    @property
    def display(self) -> str:
        return _DISPLAY[self]


_DISPLAY = {
    ErrorCode.SEGMENT_SEQUENCE: "Segment sequence error",
    ErrorCode.REQUIRED_FIELD_MISSING: "Required field missing",
    ErrorCode.DATA_TYPE: "Data type error",
    ErrorCode.TABLE_VALUE_NOT_FOUND: "Table value not found",
    ErrorCode.UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type",
    ErrorCode.UNSUPPORTED_EVENT: "Unsupported event code",
    ErrorCode.UNSUPPORTED_PROCESSING_ID: "Unsupported processing id",
    ErrorCode.UNSUPPORTED_VERSION: "Unsupported version id",
    ErrorCode.UNKNOWN_KEY: "Unknown key identifier",
    ErrorCode.DUPLICATE_KEY: "Duplicate key identifier",
    ErrorCode.RECORD_LOCKED: "Application record locked",
    ErrorCode.INTERNAL_ERROR: "Application internal error",
}


@dataclass(frozen=True, slots=True)
class Location:
    """Where in the message: ``OBX`` number 2 (its order among the OBX), field 6, component 1."""

    segment: str
    sequence: int = 1
    field: int | None = None
    component: int | None = None

    def __str__(self) -> str:
        text = self.segment if self.sequence == 1 else f"{self.segment}[{self.sequence}]"
        if self.field is not None:
            text += f"-{self.field}"
            if self.component is not None:
                text += f".{self.component}"
        return text


@dataclass(frozen=True, slots=True)
class Issue:
    code: ErrorCode
    text: str
    location: Location | None = None
    # ERR-4 (HL7 table 0516): E error, W warning, I information (a note on an accepted message).
    severity: Literal["E", "W", "I"] = "E"

    def __str__(self) -> str:
        return f"{self.location}: {self.text}" if self.location else self.text


class MessageError(Exception):
    """The message is refused: nothing of it is stored and the ACK carries ``ack_code``
    (``AR`` for a message we do not take at all, ``AE`` for one whose content is wrong)."""

    def __init__(self, issues: Sequence[Issue], *, ack_code: AckCode = "AE") -> None:
        super().__init__("; ".join(str(issue) for issue in issues))
        self.issues = tuple(issues)
        self.ack_code: AckCode = ack_code


class ParseError(MessageError):
    """The ER7 text is malformed, truncated or not an ORU^R01 of a supported version."""

    def __init__(
        self,
        text: str,
        location: Location | None = None,
        *,
        code: ErrorCode = ErrorCode.DATA_TYPE,
        ack_code: AckCode = "AE",
    ) -> None:
        super().__init__([Issue(code, text, location)], ack_code=ack_code)
