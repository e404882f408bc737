"""ingest_panel_once() takes the document and the stored response as their own parameters and
inserts a panel's results in one statement; panel documents and stored responses compress
with lz4 and stay in their row (PostgreSQL)

Revision ID: f1b3d5e7a9c2
Revises: e3a9c5f7b1d2
Create Date: 2026-12-03 11:00:00+00:00

Measured with perf on the POST load (issue 15): of the database's CPU per POST, decoding the
stored response sent as hex inside the JSON argument took ~6 %, pglz compressing the ~4.7 KB
document and its identical stored response ~6 %, and each of the four result INSERTs a whole
executor start (its CHECK constraints read back from their stored form every time). The
function now takes the document as text and the response as bytea (bound as such by the
driver: nothing to unescape or decode), builds the results' rows in an array and inserts them
with ONE statement, checks the patient, its identifier and the range set in one query and
sets lock_timeout by assignment (each SQL statement of a plpgsql function starts an executor
of its own: 12 became 7), and the two large columns use lz4 (several times faster than pglz at a
similar ratio on JSON; values already stored keep their compression). Where the server was
built without lz4 the columns keep pglz.

Compressed, a four-result document is ~2.3 KB: over PostgreSQL's default TOAST threshold
(~2 KB), so each one, and its stored response, went out of line into the TOAST table, two
chunks each: four more heap rows and four more index entries per POST (pg_stat_all_tables
showed both TOAST tables growing by two rows per panel). ``toast_tuple_target = 4080`` on both
tables keeps a compressed value of up to ~4 KB in its row (a row still compresses once it
passes the target; larger values still go out of line), and a GET reads one row, not three.

Same checks, same refusals and SQLSTATEs as e3a9c5f7b1d2 (app.panels.fast_post matches them).
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from alembic import op

revision: str = "f1b3d5e7a9c2"
down_revision: str | None = "e3a9c5f7b1d2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_SIGNATURE = "ingest_panel_once(jsonb, jsonb, text, smallint)"
_NEW_SIGNATURE = "ingest_panel_once(jsonb, text, bytea, jsonb, text, smallint)"

_FUNCTION = """
CREATE FUNCTION ingest_panel_once(
    p jsonb, document text, response_body bytea,
    audit_rows jsonb, audit_expected_prev text, audit_chain smallint
) RETURNS void LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    org uuid := (p ->> 'organization_id')::uuid;
    pat jsonb := p -> 'patient';
    idem jsonb := p -> 'idempotency';
    results jsonb := p -> 'results';
    lock_wait text := current_setting('lock_timeout');
    idem_row idempotency_record;
    panel_row panel;
    result_row result;
    result_rows result[] := '{}';
    item jsonb;
    written integer;
    tail text;
    ignored text;
    patient_ok boolean;
    identifier_ok boolean;
    range_set_ok boolean;
BEGIN
    -- The patient and the active range set the caller interpreted against: one query.
    SELECT
        EXISTS (
            SELECT 1 FROM patient
            WHERE organization_id = org AND id = (pat ->> 'id')::uuid
                AND sex = pat ->> 'sex'
                AND birth_date IS NOT DISTINCT FROM (pat ->> 'birth_date')::date
        ),
        pat ->> 'system' IS NULL OR EXISTS (
            SELECT 1 FROM patient_identifier
            WHERE organization_id = org AND system = pat ->> 'system'
                AND value = pat ->> 'value' AND patient_id = (pat ->> 'id')::uuid
        ),
        (SELECT id FROM range_set WHERE organization_id = org AND status = 'active')
            IS NOT DISTINCT FROM (p ->> 'range_set_id')::uuid
    INTO patient_ok, identifier_ok, range_set_ok;
    IF NOT patient_ok THEN
        RAISE EXCEPTION 'the remembered patient changed' USING ERRCODE = 'MP001';
    END IF;
    IF NOT identifier_ok THEN
        RAISE EXCEPTION 'the identifier names another patient' USING ERRCODE = 'MP001';
    END IF;
    IF NOT range_set_ok THEN
        RAISE EXCEPTION 'the active range set changed' USING ERRCODE = 'MP002';
    END IF;
    -- Never wait long for another sender's uncommitted key or accession: the plain path does.
    -- (Assignments, not PERFORM: plpgsql evaluates them without starting an executor.)
    ignored := set_config('lock_timeout', p ->> 'lock_timeout', true);
    IF jsonb_typeof(idem) = 'object' THEN
        idem_row := jsonb_populate_record(NULL::idempotency_record, idem);
        idem_row.response_body := response_body;
        INSERT INTO idempotency_record VALUES (idem_row.*)
            ON CONFLICT (principal_id, key) DO NOTHING;
        GET DIAGNOSTICS written = ROW_COUNT;
        IF written = 0 THEN
            RAISE EXCEPTION 'the idempotency key exists' USING ERRCODE = 'MP003';
        END IF;
    END IF;
    panel_row := jsonb_populate_record(NULL::panel, p -> 'panel');
    panel_row.document := document;
    INSERT INTO panel VALUES (panel_row.*)
        ON CONFLICT (organization_id, source, accession) DO NOTHING;
    GET DIAGNOSTICS written = ROW_COUNT;
    IF written = 0 THEN
        RAISE EXCEPTION 'the accession exists' USING ERRCODE = 'MP004';
    END IF;
    FOR i IN 0 .. jsonb_array_length(results) - 1 LOOP
        item := results -> i;
        result_row := jsonb_populate_record(NULL::result, item);
        -- A JSON null stays a JSON null, as the plain path stores Python None.
        result_row.reference_range := item -> 'reference_range';
        result_rows := result_rows || result_row;
    END LOOP;
    INSERT INTO result SELECT * FROM unnest(result_rows);
    ignored := set_config('lock_timeout', lock_wait, true);
    tail := audit_append_rows(audit_rows, audit_expected_prev, audit_chain);
    IF tail IS NOT NULL THEN
        RAISE EXCEPTION 'the audit tail moved' USING ERRCODE = 'MP005', DETAIL = tail;
    END IF;
END $$
"""

_LZ4 = """
DO $$ BEGIN
    ALTER TABLE panel ALTER COLUMN document SET COMPRESSION lz4;
    ALTER TABLE idempotency_record ALTER COLUMN response_body SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'this server has no lz4: panel documents and stored responses keep pglz';
END $$
"""

_IN_ROW = (
    "ALTER TABLE panel SET (toast_tuple_target = 4080)",
    "ALTER TABLE idempotency_record SET (toast_tuple_target = 4080)",
)

_DEFAULT_STORAGE = (
    "ALTER TABLE panel RESET (toast_tuple_target)",
    "ALTER TABLE idempotency_record RESET (toast_tuple_target)",
    "ALTER TABLE panel ALTER COLUMN document SET COMPRESSION DEFAULT",
    "ALTER TABLE idempotency_record ALTER COLUMN response_body SET COMPRESSION DEFAULT",
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"DROP FUNCTION IF EXISTS {_OLD_SIGNATURE}")
    op.execute(_FUNCTION)
    op.execute(_LZ4)
    for statement in _IN_ROW:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for statement in _DEFAULT_STORAGE:
        op.execute(statement)
    op.execute(f"DROP FUNCTION IF EXISTS {_NEW_SIGNATURE}")
    op.execute(_previous_function())


def _previous_function() -> str:
    """e3a9c5f7b1d2's function, from its own file (what the downgrade restores)."""
    path = Path(__file__).with_name("2026-12-02-2130_ingest_panel_once.py")
    spec = importlib.util.spec_from_file_location("_ingest_panel_once_e3a9c5f7b1d2", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    function: str = module._FUNCTION
    return function
