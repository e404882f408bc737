"""ingest_panel_once(): a new panel, its results, its idempotency record and audit rows in one
statement (PostgreSQL)

Revision ID: e3a9c5f7b1d2
Revises: d4f8a2c6e0b1
Create Date: 2026-12-02 21:30:00+00:00

The speculative one-statement POST /api/v1/panels (app.panels.fast_post, ADR 0007). The caller
computed everything (the interpretation, the document, the stored response, the audit rows'
HMACs) against a patient and an active range set it remembered; the function checks that they
still are what it used, then writes the completed idempotency record, the panel, its results
and the audit rows (``audit_append_rows``). Any check that fails, a key or natural key that
already exists, a lock it would wait for, or an audit tail that moved RAISEs with its own
SQLSTATE, so the statement writes nothing and the caller takes the plain path (or, for the tail,
hashes again). SQLite has no such function: it keeps the plain path.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "e3a9c5f7b1d2"
down_revision: str | None = "d4f8a2c6e0b1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLSTATEs, matched by app.panels.fast_post.
_FUNCTION = """
CREATE FUNCTION ingest_panel_once(
    p jsonb, audit_rows jsonb, audit_expected_prev text, audit_chain smallint
) RETURNS void LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    org uuid := (p ->> 'organization_id')::uuid;
    pat jsonb := p -> 'patient';
    idem jsonb := p -> 'idempotency';
    lock_wait text := current_setting('lock_timeout');
    panel_row panel;
    result_row result;
    item jsonb;
    written integer;
    tail text;
BEGIN
    -- The patient and the active range set the caller interpreted against.
    IF NOT EXISTS (
        SELECT 1 FROM patient
        WHERE organization_id = org AND id = (pat ->> 'id')::uuid
            AND sex = pat ->> 'sex'
            AND birth_date IS NOT DISTINCT FROM (pat ->> 'birth_date')::date
    ) THEN
        RAISE EXCEPTION 'the remembered patient changed' USING ERRCODE = 'MP001';
    END IF;
    IF pat ->> 'system' IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM patient_identifier
        WHERE organization_id = org AND system = pat ->> 'system'
            AND value = pat ->> 'value' AND patient_id = (pat ->> 'id')::uuid
    ) THEN
        RAISE EXCEPTION 'the identifier names another patient' USING ERRCODE = 'MP001';
    END IF;
    IF (SELECT id FROM range_set WHERE organization_id = org AND status = 'active')
        IS DISTINCT FROM (p ->> 'range_set_id')::uuid THEN
        RAISE EXCEPTION 'the active range set changed' USING ERRCODE = 'MP002';
    END IF;
    -- Never wait long for another sender's uncommitted key or accession: the plain path does.
    PERFORM set_config('lock_timeout', p ->> 'lock_timeout', true);
    IF jsonb_typeof(idem) = 'object' THEN
        INSERT INTO idempotency_record
            SELECT (jsonb_populate_record(NULL::idempotency_record, idem)).*
            ON CONFLICT (principal_id, key) DO NOTHING;
        GET DIAGNOSTICS written = ROW_COUNT;
        IF written = 0 THEN
            RAISE EXCEPTION 'the idempotency key exists' USING ERRCODE = 'MP003';
        END IF;
    END IF;
    panel_row := jsonb_populate_record(NULL::panel, p -> 'panel');
    INSERT INTO panel VALUES (panel_row.*)
        ON CONFLICT (organization_id, source, accession) DO NOTHING;
    GET DIAGNOSTICS written = ROW_COUNT;
    IF written = 0 THEN
        RAISE EXCEPTION 'the accession exists' USING ERRCODE = 'MP004';
    END IF;
    FOR item IN SELECT value FROM jsonb_array_elements(p -> 'results') LOOP
        result_row := jsonb_populate_record(NULL::result, item);
        -- A JSON null stays a JSON null, as the plain path stores Python None.
        result_row.reference_range := item -> 'reference_range';
        INSERT INTO result VALUES (result_row.*);
    END LOOP;
    PERFORM set_config('lock_timeout', lock_wait, true);
    tail := audit_append_rows(audit_rows, audit_expected_prev, audit_chain);
    IF tail IS NOT NULL THEN
        RAISE EXCEPTION 'the audit tail moved' USING ERRCODE = 'MP005', DETAIL = tail;
    END IF;
END $$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS ingest_panel_once(jsonb, jsonb, text, smallint)")
