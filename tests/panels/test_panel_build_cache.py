"""What building a panel keeps between panels changes nothing it writes: ids are version 7
UUIDs, time-ordered, and a range snapshot's fields (and their JSON) worked
out once give every later result its own, equal copy; a snapshot not written as text (one
stored by an older version) is never kept."""

from __future__ import annotations

import time
import uuid
from datetime import date
from decimal import Decimal
from types import SimpleNamespace
from typing import Any, cast

import orjson

from app.core.db import new_id
from app.domain.catalog import default_catalog
from app.models.panel import Result
from app.panels import service, views
from app.panels.interpretation import normalize
from app.panels.repository import PatientForPanel
from app.panels.schemas import AppliedRangeOut, PanelCreate, PanelOut
from tests.panels.test_panel_document import _range_set, legacy_panel_out


def test_new_ids_are_time_ordered_version_7_uuids() -> None:
    before = time.time_ns() // 1_000_000
    ids = service.new_ids(300) + [i for _ in range(200) for i in service.new_ids(3)]
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == len(ids)
    # Made one after another, they sort in the order they were made: an index leading with
    # them is appended to (ADR 0011).
    assert ids == sorted(ids)
    assert [str(i) for i in ids] == sorted(str(i) for i in ids)
    for made in ids:
        assert type(made) is uuid.UUID
        assert (made.version, made.variant) == (7, uuid.RFC_4122)
        assert uuid.UUID(str(made)) == made
        assert hash(made) == hash(uuid.UUID(str(made)))
        # RFC 9562 section 5.7: the top 48 bits are the Unix time in milliseconds.
        assert before <= made.int >> 80 <= after
    # Below the time, the version and a counter that keeps ids made in one millisecond in
    # order (its low bits vary too), the last 32 bits are random: every one is seen set and
    # seen clear.
    seen_set = seen_clear = 0
    for made in ids:
        seen_set |= made.int
        seen_clear |= ~made.int
    low = (1 << 32) - 1
    assert seen_set & low == seen_clear & low == low


def test_new_id_makes_increasing_version_7_ids() -> None:
    assert new_id().version == 7
    assert new_id() < new_id()


def _snapshot(**changes: Any) -> dict[str, Any]:
    snapshot: dict[str, Any] = {
        "range_set": {"id": str(uuid.UUID(int=5)), "name": "default", "version": 3},
        "basis": "reference",
        "row_id": "r-cache-test",
        "unit": "mmol/L",
        "original_unit": "mg/dL",
        "specimen": "serum",
        "sex": None,
        "age_min_years": "18",
        "age_max_years": None,
        "low": "0.70",
        "high": "1.00",
        "critical_low": "0.41",
        "critical_high": None,
        "absolute_low": "0",
        "absolute_high": None,
        "source": "a source",
    }
    return snapshot | changes


def _reference(snapshot: dict[str, Any]) -> dict[str, Any]:
    out = AppliedRangeOut.model_validate(
        {
            **{k: v for k, v in snapshot.items() if k in AppliedRangeOut.model_fields},
            **{
                k: None if snapshot.get(k) is None else Decimal(str(snapshot[k]))
                for k in ("age_min_years", "age_max_years", "low", "high")
                + ("critical_low", "critical_high")
            },
        }
    )
    return out.model_dump()


def test_a_kept_range_gives_each_caller_its_own_equal_fields() -> None:
    first = views.applied_range_fields(_snapshot())
    second = views.applied_range_fields(_snapshot())
    assert first is not None
    assert second is not None
    assert first == second == _reference(_snapshot())
    assert first is not second
    first["low"] = Decimal(99)  # a caller's change stays its own
    assert views.applied_range_fields(_snapshot()) == _reference(_snapshot())
    # The range set in the fields is the snapshot's own.
    snapshot = _snapshot()
    got = views.applied_range_fields(snapshot)
    assert got is not None
    assert got["range_set"] is snapshot["range_set"]


def test_a_kept_range_is_rendered_as_its_fields() -> None:
    for snapshot in (_snapshot(), _snapshot(), _snapshot(high="1.05"), _snapshot(high="1.05")):
        fields = views.applied_range_fields(snapshot)
        document = views.render({"reference_range": fields})
        expected = AppliedRangeOut.model_validate(_reference(snapshot)).model_dump_json()
        assert orjson.loads(document)["reference_range"] == orjson.loads(expected)
        assert document == '{"reference_range":' + expected + "}"


def test_a_snapshot_not_written_as_text_is_read_as_it_is() -> None:
    """Numbers where text is written (1 and 1.0 are equal, but not the same decimal)."""
    for low in (1, 1.0, Decimal("1.00"), "1"):
        snapshot = _snapshot(row_id="r-numbers", low=low)
        fields = views.applied_range_fields(snapshot)
        assert fields is not None
        assert repr(fields["low"]) == repr(Decimal(str(low)))
    versioned = _snapshot(row_id="r-version", range_set={"id": "x", "name": "n", "version": 1.0})
    fields = views.applied_range_fields(versioned)
    assert fields is not None
    assert fields["range_set"] == {"id": "x", "name": "n", "version": 1.0}


def test_the_same_panel_built_twice_writes_the_same_document() -> None:
    """The second build reads every range from what the first kept."""
    body = {
        "patient": {"id": str(uuid.UUID(int=9))},
        "source": "acme",
        "accession": "A-cache",
        "collected_at": "2026-01-05T08:00:00Z",
        "results": [
            {"analyte": "magnesium", "value": "1.6", "unit": "mg/dL"},
            {"analyte": "calcium", "value": "<5", "unit": "mg/dL", "flag": "LL"},
            {"analyte": "zinc", "value": "55", "unit": "ug/dL"},
        ],
    }
    data = PanelCreate.model_validate(body)
    patient = PatientForPanel(uuid.UUID(int=9), "male", date(1970, 6, 1), None)
    range_set = _range_set()
    for _ in range(3):
        normalized = normalize(data, specimen="serum", catalog=default_catalog())
        panel, rows, out = service.new_panel(
            data,
            normalized,
            organization_id=uuid.UUID(int=1),
            patient=patient,
            range_set=range_set,
            source_format="json",
        )
        stored = [cast(Result, SimpleNamespace(**row)) for row in rows]
        reference = legacy_panel_out(panel, stored, range_set.name, range_set.version)
        assert panel.document == reference.model_dump_json()
        assert out == reference
        assert PanelOut.model_validate_json(panel.document or "") == reference


def test_a_snapshot_holding_a_list_is_read_as_it_is() -> None:
    snapshot = _snapshot(row_id=["a", "list"])
    fields = views.applied_range_fields(snapshot)
    assert fields is not None
    assert fields["row_id"] == ["a", "list"]
    mixed = _snapshot(range_set={"id": "x", "name": ["n"], "version": 1})
    fields = views.applied_range_fields(mixed)
    assert fields is not None
    assert fields["range_set"] == {"id": "x", "name": ["n"], "version": 1}
