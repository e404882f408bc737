"""The reference-range-set document: what admins import (YAML, CSV) and the API accepts (JSON).

Rows stay in the unit their source publishes (mg/dL, ug/dL, ng/mL, ...): converting each row to
the analyte's canonical unit, and checking analyte codes against the catalog, is the service's
job. This module only guarantees that a document is well formed and internally consistent.

CSV carries rows only (one row per line, header = the row fields); ratio ranges need YAML or JSON.
"""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal, InvalidOperation
from importlib import resources
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from app.domain.range_errors import RangeSetFormatError
from app.domain.ratios import RatioDefinition
from app.domain.reference_ranges import validate_rows
from app.domain.types import RangeLimits, RangeRow, Sex, Specimen
from app.domain.validation_errors import error_path, errors_message

DEFAULT_RANGE_SET_RESOURCE = "data/reference_ranges/default.yaml"

NonNegativeDecimal = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]
NonEmptyText = Annotated[str, Field(min_length=1)]

# Ordered from the lowest to the highest limit; any present pair must respect this order.
_LIMIT_ORDER = ("absolute_low", "critical_low", "low", "high", "critical_high", "absolute_high")


class RangeRowDocument(BaseModel):
    """One reference-range row, in the unit its source uses."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    analyte: NonEmptyText = Field(examples=["magnesium"])
    specimen: Specimen | None = Field(default=None, description="None: any specimen")
    sex: Literal["female", "male"] | None = Field(default=None, description="None: any sex")
    age_min_years: NonNegativeDecimal | None = Field(
        default=None, description="inclusive lower age bound in years; None: from birth"
    )
    age_max_years: NonNegativeDecimal | None = Field(
        default=None, description="exclusive upper age bound in years; None: no upper bound"
    )
    unit: NonEmptyText = Field(examples=["mg/dL"])
    low: NonNegativeDecimal | None = None
    high: NonNegativeDecimal | None = None
    critical_low: NonNegativeDecimal | None = None
    critical_high: NonNegativeDecimal | None = None
    absolute_low: NonNegativeDecimal | None = None
    absolute_high: NonNegativeDecimal | None = None
    source: NonEmptyText = Field(description="where the limits come from (a URL when possible)")
    note: str | None = None

    @model_validator(mode="after")
    def _check_limits(self) -> RangeRowDocument:
        if self.low is None and self.high is None:
            raise ValueError("a row needs at least one of low or high")
        if (
            self.age_min_years is not None
            and self.age_max_years is not None
            and self.age_max_years <= self.age_min_years
        ):
            raise ValueError(
                f"age_max_years ({self.age_max_years}) must be greater than "
                f"age_min_years ({self.age_min_years})"
            )
        present = [(name, getattr(self, name)) for name in _LIMIT_ORDER]
        present = [(name, value) for name, value in present if value is not None]
        for (lower_name, lower), (upper_name, upper) in zip(present, present[1:], strict=False):
            if lower > upper:
                raise ValueError(
                    f"{lower_name} ({lower}) must not be above {upper_name} ({upper}); expected "
                    "absolute_low <= critical_low <= low <= high <= critical_high <= absolute_high"
                )
        return self

    def limits(self) -> RangeLimits:
        """The row's limits in the row's own unit (convert before comparing canonical values)."""
        # The row's limit fields and RangeLimits' fields are the same six names.
        return RangeLimits(**{name: getattr(self, name) for name in _LIMIT_ORDER})

    def to_range_row(
        self, *, unit: str, limits: RangeLimits, row_id: str | None = None
    ) -> RangeRow:
        """The selection row for this document row, given limits already converted to ``unit``."""
        return RangeRow(
            analyte=self.analyte,
            unit=unit,
            limits=limits,
            specimen=self.specimen.value if self.specimen is not None else None,
            sex=Sex(self.sex) if self.sex is not None else None,
            age_min_years=self.age_min_years,
            age_max_years=self.age_max_years,
            source=self.source,
            row_id=row_id,
        )


class RatioRangeDocument(BaseModel):
    """A derived ratio (numerator / denominator, canonical molar values) and its range."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    code: str = Field(pattern=r"^[a-z0-9_]+$", examples=["ca_mg_molar"])
    display: NonEmptyText = Field(examples=["Calcium:magnesium molar ratio"])
    numerator: NonEmptyText = Field(examples=["calcium"])
    denominator: NonEmptyText = Field(examples=["magnesium"])
    low: NonNegativeDecimal | None = None
    high: NonNegativeDecimal | None = None
    source: NonEmptyText
    note: str | None = None

    @model_validator(mode="after")
    def _check(self) -> RatioRangeDocument:
        if self.numerator == self.denominator:
            raise ValueError("numerator and denominator must be different analytes")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"low ({self.low}) must not be above high ({self.high})")
        return self

    def to_definition(self) -> RatioDefinition:
        return RatioDefinition.of(self)


class RangeSetDocument(BaseModel):
    """A named set of reference-range rows and ratio ranges, as imported or posted."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    name: NonEmptyText = Field(examples=["default"])
    description: str | None = None
    source: NonEmptyText = Field(description="the set's provenance (who compiled it, from what)")
    effective_from: date | None = None
    rows: list[RangeRowDocument] = Field(min_length=1)
    ratios: list[RatioRangeDocument] = Field(default_factory=list)

    # Field validators rather than one model validator, so an error's path names the list at
    # fault (`rows`, `ratios`) instead of the whole document.
    @field_validator("rows")
    @classmethod
    def _unambiguous_rows(cls, rows: list[RangeRowDocument]) -> list[RangeRowDocument]:
        selection_rows = [row.to_range_row(unit=row.unit, limits=row.limits()) for row in rows]
        problems = [
            f"rows[{conflict.first_index}] and rows[{conflict.second_index}] are equally "
            f"specific and overlap, so neither can be chosen ({conflict.message.split(': ', 1)[1]})"
            for conflict in validate_rows(selection_rows)
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return rows

    @field_validator("ratios")
    @classmethod
    def _distinct_ratio_codes(cls, ratios: list[RatioRangeDocument]) -> list[RatioRangeDocument]:
        problems: list[str] = []
        seen: set[str] = set()
        for index, ratio in enumerate(ratios):
            if ratio.code in seen:
                problems.append(f"ratios[{index}]: duplicate ratio code {ratio.code!r}")
            seen.add(ratio.code)
        if problems:
            raise ValueError("; ".join(problems))
        return ratios


def parse_range_set_yaml(text: str) -> RangeSetDocument:
    """Read a YAML range set; numbers keep their exact decimal digits."""
    try:
        # A SafeLoader subclass: only plain data is built, exactly as with yaml.safe_load.
        data = yaml.load(text, Loader=_DecimalSafeLoader)
    except yaml.YAMLError as exc:
        line = _yaml_error_line(exc)
        where = f" (line {line})" if line is not None else ""
        error: dict[str, Any] = {"loc": [], "path": "", "msg": f"not valid YAML: {exc}"}
        if line is not None:
            error["line"] = line
        raise RangeSetFormatError(f"the range set is not valid YAML{where}", [error]) from exc
    if not isinstance(data, dict):
        raise RangeSetFormatError(
            "the range set must be a YAML mapping with name, source and rows",
            [{"loc": [], "path": "", "msg": "expected a mapping at the top level"}],
        )
    return _validate(data, lines=None)


def parse_range_set_csv(text: str, *, name: str, source: str) -> RangeSetDocument:
    """Read a CSV range set: a header row naming row fields, then one reference-range row a line.

    Empty cells are None. Ratios cannot be expressed in CSV (the document has none); import them
    with YAML or JSON. Errors name the CSV line (the header is line 1).
    """
    reader = csv.DictReader(io.StringIO(text.removeprefix("\ufeff")), restkey="__extra__")
    reader.fieldnames = _csv_header(reader)
    rows: list[dict[str, str | None]] = []
    lines: list[int] = []
    try:
        for record in reader:
            cells = _csv_cells(record, index=len(rows), line=reader.line_num)
            if cells:
                rows.append(cells)
                lines.append(reader.line_num)
    except csv.Error as exc:
        raise RangeSetFormatError(
            f"line {reader.line_num}: the CSV could not be read: {exc}",
            [{"loc": [], "path": "", "msg": str(exc), "line": reader.line_num}],
        ) from exc
    return _validate({"name": name, "source": source, "rows": rows}, lines=lines)


def _csv_header(reader: csv.DictReader[str]) -> list[str]:
    """The stripped header, refused when empty, unknown, incomplete or repeated."""
    try:
        header = [column.strip() for column in reader.fieldnames or []]
    except csv.Error as exc:
        raise RangeSetFormatError(f"the CSV could not be read: {exc}", []) from exc
    if not header:
        raise RangeSetFormatError(
            "the CSV is empty: expected a header row",
            [{"loc": [], "path": "", "msg": "missing header row", "line": 1}],
        )
    allowed = set(RangeRowDocument.model_fields)
    unknown = [column for column in header if column not in allowed]
    missing = [column for column in ("analyte", "unit", "source") if column not in header]
    errors = [_header_error(column, "unknown column") for column in unknown]
    errors += [_header_error(column, "missing column") for column in missing]
    if len(set(header)) != len(header):
        errors.append({"loc": ["header"], "path": "header", "msg": "duplicate column", "line": 1})
    if errors:
        summary = "; ".join(f"{error['path']}: {error['msg']}" for error in errors)
        raise RangeSetFormatError(f"the CSV header is not usable: {summary}", errors)
    return header


def _header_error(column: str, message: str) -> dict[str, Any]:
    return {"loc": ["header", column], "path": f"header.{column}", "msg": message, "line": 1}


def _csv_cells(record: dict[str, Any], *, index: int, line: int) -> dict[str, str | None]:
    """The non-empty cells of one CSV record ({} for a blank line)."""
    if "__extra__" in record:
        raise RangeSetFormatError(
            f"line {line}: more cells than header columns",
            [
                {
                    "loc": ["rows", index],
                    "path": f"rows[{index}]",
                    "msg": "more cells than header columns",
                    "line": line,
                }
            ],
        )
    cells = {key: _cell(value) for key, value in record.items()}
    return {key: value for key, value in cells.items() if value is not None}


def read_default_range_set() -> RangeSetDocument:
    """The range set shipped with the application (``app/data/reference_ranges/default.yaml``)."""
    text = resources.files("app").joinpath(DEFAULT_RANGE_SET_RESOURCE).read_text(encoding="utf-8")
    return parse_range_set_yaml(text)


def _validate(data: dict[Any, Any], *, lines: list[int] | None) -> RangeSetDocument:
    try:
        return RangeSetDocument.model_validate(data)
    except ValidationError as exc:
        errors = [_error_entry(error, lines) for error in exc.errors(include_input=False)]
        raise RangeSetFormatError(errors_message("range set", errors), errors) from exc


def _error_entry(error: Any, lines: list[int] | None) -> dict[str, Any]:
    loc = list(error["loc"])
    entry: dict[str, Any] = {
        "loc": loc,
        "path": error_path(loc),
        "msg": error["msg"],
        "type": error["type"],
    }
    if lines is not None and len(loc) >= 2 and loc[0] == "rows" and isinstance(loc[1], int):
        if 0 <= loc[1] < len(lines):
            entry["line"] = lines[loc[1]]
    return entry


def _cell(value: str | list[str] | None) -> str | None:
    if value is None or isinstance(value, list):
        return None
    stripped = value.strip()
    return stripped or None


def _yaml_error_line(exc: yaml.YAMLError) -> int | None:
    mark = getattr(exc, "problem_mark", None)
    if mark is None:
        return None
    line = getattr(mark, "line", None)
    return line + 1 if isinstance(line, int) else None


class _DecimalSafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` reading floats as ``Decimal`` so 1.7 stays exactly 1.7."""


def _construct_decimal(loader: yaml.SafeLoader, node: yaml.Node) -> Decimal | float:
    text = str(loader.construct_scalar(node)).replace("_", "")  # type: ignore[arg-type]
    try:
        number = Decimal(text)
    except InvalidOperation:
        return float(loader.construct_yaml_float(node))  # type: ignore[arg-type]
    return number if number.is_finite() else float(number)


_DecimalSafeLoader.add_constructor("tag:yaml.org,2002:float", _construct_decimal)
