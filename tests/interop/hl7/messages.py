"""Keyword-only builders of ER7 test messages (segments joined by CR, as a lab sends them)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

MRN_AUTHORITY = "&urn:test:hl7-mrn&URI"
MRN_SYSTEM = "urn:test:hl7-mrn"
_counter = itertools.count(1)


def next_id(prefix: str) -> str:
    return f"{prefix}-{next(_counter):06d}"


def obx(
    code: str,
    value: str,
    unit: str,
    *,
    value_type: str = "NM",
    system: str = "LN",
    text: str = "",
    range_text: str = "",
    flag: str = "",
    status: str = "F",
) -> str:
    """One OBX without its set id (numbered by ``oru``)."""
    coded = f"{code}^{text}^{system}"
    return f"OBX|{{n}}|{value_type}|{coded}||{value}|{unit}|{range_text}|{flag}|||{status}"


def oru(
    observations: Sequence[str],
    *,
    control_id: str | None = None,
    version: str = "2.5.1",
    application: str = "LIS",
    facility: str = "ACME-LAB",
    message_type: str = "ORU^R01^ORU_R01",
    mrn: str = "MRN-HL7-1",
    sex: str = "F",
    birth_date: str = "19810412",
    accession: str | None = None,
    collected: str = "20261120083000+0000",
    specimen: str = "",
    extra: Sequence[str] = (),
) -> str:
    segments = [
        f"MSH|^~\\&|{application}|{facility}|MINERAL-LABS|CLINIC|20261120093000+0000||"
        f"{message_type}|{next_id('MSG') if control_id is None else control_id}|P|{version}",
        f"PID|1||{mrn}^^^{MRN_AUTHORITY}^MR||DOE^JANE||{birth_date}|{sex}",
        "PV1|1|O",
        f"OBR|1|PL-1|{accession or next_id('ACC')}|MIN^Mineral panel^L|||{collected}"
        f"||||||||{specimen}",
        *extra,
    ]
    segments += [o.replace("{n}", str(n)) for n, o in enumerate(observations, start=1)]
    return "\r".join(segments) + "\r"


def magnesium_mmol(value: str = "0.62", **kwargs: str) -> str:
    """Magnesium in mmol/L, coded in LOINC, with the lab's range."""
    return obx(
        "2601-3", value, "mmol/L", **{"text": "Magnesium", "range_text": "0.70-1.00", **kwargs}
    )


def segment(ack: str, name: str) -> list[str]:
    """The fields of the first ``name`` segment of an ACK (split on |)."""
    for line in ack.split("\r"):
        if line.startswith(name + "|"):
            return line.split("|")
    raise AssertionError(f"no {name} segment in {ack!r}")


def acks(body: str) -> list[str]:
    """The ACK messages of a concatenated answer (a batch's FHS/BHS/BTS/FTS left out)."""
    lines = [line for line in body.split("\r") if line[:4] not in ("FHS|", "BHS|", "BTS|", "FTS|")]
    parts = [p for p in "\r".join(lines).split("MSH|") if p]
    return ["MSH|" + p for p in parts]
