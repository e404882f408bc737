"""CPU per panel of the domain work of a POST: ``normalize`` + ``new_panel`` (interpret, build
the rows, render the stored document), no I/O.

    python bench/panel_cpu.py [--panels 20000] [--repeat 5] [--profile]

The bench panel: magnesium 1.6 mg/dL, calcium 9.1 mg/dL, zinc 55 ug/dL, iron 80 ug/dL, a woman
born 1980 (``--no-birth-date``: of unknown age, as bench/bulk.py's), the default range set
compiled. Prints µs of CPU (time.process_time) per panel, the best and the median of
``--repeat`` runs (the best is the least disturbed by other processes); ``--profile`` prints a
cProfile table instead.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
import uuid
from datetime import date

from app.domain.catalog import default_catalog
from app.panels.interpretation import normalize
from app.panels.repository import PatientForPanel
from app.panels.schemas import PanelCreate
from app.panels.service import new_panel, new_panel_rows
from app.ranges.compiled import CompiledRangeSet, compile_rows, ratio_definitions
from app.ranges.service import default_document

BODY = {
    "patient": {"id": str(uuid.UUID(int=7))},
    "source": "bench",
    "accession": "A-1",
    "collected_at": "2026-01-05T08:00:00Z",
    "results": [
        {"analyte": "magnesium", "value": "1.6", "unit": "mg/dL"},
        {"analyte": "calcium", "value": "9.1", "unit": "mg/dL"},
        {"analyte": "zinc", "value": "55", "unit": "ug/dL"},
        {"analyte": "iron", "value": "80", "unit": "ug/dL"},
    ],
}


def default_set() -> CompiledRangeSet:
    document = default_document()
    rows, original_units = compile_rows(document.rows, default_catalog())
    return CompiledRangeSet(
        id=uuid.UUID(int=1),
        name=document.name,
        version=1,
        rows_by_analyte=rows,
        ratios=ratio_definitions(document.ratios),
        original_units=original_units,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--panels", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--without-view", action="store_true", help="time new_panel_rows (no PanelOut)"
    )
    parser.add_argument(
        "--no-birth-date",
        action="store_true",
        help="the patient's age unknown (as bench/bulk.py's): no row covers them, every result "
        "gets the cautious critical limits alone",
    )
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    catalog = default_catalog()
    range_set = default_set()
    data = PanelCreate.model_validate(BODY)
    birth_date = None if args.no_birth_date else date(1980, 1, 1)
    patient = PatientForPanel(uuid.UUID(int=7), "female", birth_date, range_set.id)
    organization_id = uuid.UUID(int=3)

    build = new_panel_rows if args.without_view else new_panel

    def one() -> None:
        normalized = normalize(data, specimen=data.specimen.value, catalog=catalog)
        build(
            data,
            normalized,
            organization_id=organization_id,
            patient=patient,
            range_set=range_set,
            source_format="json",
        )

    for _ in range(200):  # warm caches
        one()
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(args.panels):
            one()
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
        return
    runs = []
    for _ in range(args.repeat):
        start = time.process_time()
        for _ in range(args.panels):
            one()
        runs.append((time.process_time() - start) / args.panels * 1e6)
    runs.sort()
    print(  # noqa: T201
        f"normalize + {build.__name__}: best {runs[0]:.1f} µs CPU per panel, median "
        f"{runs[len(runs) // 2]:.1f} ({args.repeat} runs of {args.panels} panels)"
    )


if __name__ == "__main__":
    main()
