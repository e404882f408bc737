"""keyed audit chain

Revision ID: a8c3d5e7f901
Revises: 7d1a2b3c4e5f
Create Date: 2026-12-02 10:00:00+00:00

The audit chain becomes keyed: each row's hash is HMAC-SHA256 under a secret from the settings
(MINERAL_AUDIT_KEY) that the database never sees, so the hashes are computed by the service,
not in SQL. On PostgreSQL ``audit_append()`` (which hashed in the database) is replaced by
``audit_append_rows(rows, expected_prev)``: one call takes the chain's lock, reads the tail and,
when it is the one the service hashed against, inserts the rows (checking that they link);
otherwise it inserts nothing and returns the real tail, and the service hashes again.

Existing rows are re-sealed: the unkeyed (version 1) chain is verified first, and the migration
fails, changing nothing, if it is already broken; then every hash is recomputed with the key.
The downgrade does the reverse. Either way the key must be the one the service will use.

Also: ``api_key.revoked_by``, the principal that revoked a key (the issuer is ``created_by``).
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import context, op

from app.audit.chain import GENESIS_HASH, event_hash, legacy_event_hash, row_key
from app.core.db import UTCDateTime

revision: str = "a8c3d5e7f901"
down_revision: str | None = "7d1a2b3c4e5f"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Must match app.audit.repository.CHAIN_LOCK_KEY ("min_audi" in ASCII).
CHAIN_LOCK_KEY = 7883953978624795753
_COLUMNS = (
    "id, occurred_at, organization_id, principal_id, principal_kind, role, action, "
    "resource_type, resource_id, patient_id, outcome, status_code, method, path, request_id, "
    "client_address"
)
_APPEND_ONLY = "audit_event is append-only"


def _key() -> bytes:
    secret = context.config.attributes.get("audit_key")
    if secret is None:
        from app.core.config import get_settings

        secret = get_settings().audit_key.get_secret_value()
    return row_key(secret)


def _append_rows_function() -> str:
    values = ", ".join(f"r.{name.strip()}" for name in _COLUMNS.split(","))
    return f"""
        CREATE FUNCTION audit_append_rows(p_rows jsonb, p_expected_prev text)
        RETURNS text LANGUAGE plpgsql VOLATILE AS $$
        DECLARE
            tail text;
            prev text;
            r audit_event;
        BEGIN
            IF current_setting('transaction_isolation') <> 'read committed' THEN
                -- an older snapshot would read a stale tail and fork the chain
                RAISE EXCEPTION 'audit rows need READ COMMITTED, not %',
                    current_setting('transaction_isolation');
            END IF;
            PERFORM pg_advisory_xact_lock({CHAIN_LOCK_KEY});
            SELECT hash INTO tail FROM audit_event ORDER BY seq DESC LIMIT 1;
            tail := coalesce(tail, '{GENESIS_HASH}');
            IF tail IS DISTINCT FROM p_expected_prev THEN
                RETURN tail;  -- hashed against another tail: nothing inserted, hash again
            END IF;
            prev := tail;
            FOR i IN 0 .. jsonb_array_length(p_rows) - 1 LOOP
                r := jsonb_populate_record(NULL::audit_event, p_rows -> i);
                IF r.prev_hash IS DISTINCT FROM prev OR r.hash !~ '^[0-9a-f]{{64}}$' THEN
                    RAISE EXCEPTION 'audit row % does not link to the chain', i;
                END IF;
                INSERT INTO audit_event ({_COLUMNS}, prev_hash, hash)
                VALUES ({values}, r.prev_hash, r.hash);
                prev := r.hash;
            END LOOP;
            RETURN NULL;
        END $$
    """


# The function this revision replaces (migration 9e6a3c4d1b52), for the downgrade.
_LEGACY_APPEND = f"""
    CREATE FUNCTION audit_append(
        p_id uuid, p_occurred_at timestamptz, p_organization_id uuid, p_principal_id text,
        p_principal_kind text, p_role text, p_action text, p_resource_type text,
        p_resource_id text, p_patient_id uuid, p_outcome text, p_status_code integer,
        p_method text, p_path text, p_request_id text, p_client_address text,
        p_before text, p_after text, p_genesis text
    ) RETURNS void LANGUAGE plpgsql VOLATILE AS $$
    DECLARE
        tail text;
    BEGIN
        IF current_setting('transaction_isolation') <> 'read committed' THEN
            RAISE EXCEPTION 'audit rows need READ COMMITTED, not %',
                current_setting('transaction_isolation');
        END IF;
        PERFORM pg_advisory_xact_lock({CHAIN_LOCK_KEY});
        SELECT hash INTO tail FROM audit_event ORDER BY seq DESC LIMIT 1;
        tail := coalesce(tail, p_genesis);
        INSERT INTO audit_event ({_COLUMNS}, prev_hash, hash) VALUES (
            p_id, p_occurred_at, p_organization_id, p_principal_id, p_principal_kind, p_role,
            p_action, p_resource_type, p_resource_id, p_patient_id, p_outcome,
            p_status_code, p_method, p_path, p_request_id, p_client_address, tail,
            encode(sha256(convert_to(p_before || tail || p_after, 'UTF8')), 'hex')
        );
    END $$
"""
_LEGACY_SIGNATURE = (
    "audit_append(uuid, timestamptz, uuid, text, text, text, text, text, text, uuid, text, "
    "integer, text, text, text, text, text, text, text)"
)


# audit_event as of this revision, typed so values read back as the service hashed them.
_AUDIT_EVENT = sa.Table(
    "audit_event",
    sa.MetaData(),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("id", sa.Uuid),
    sa.Column("occurred_at", UTCDateTime),
    sa.Column("organization_id", sa.Uuid),
    *(
        sa.Column(name, sa.String)
        for name in ("principal_id", "principal_kind", "role", "action", "resource_type")
    ),
    sa.Column("resource_id", sa.String),
    sa.Column("patient_id", sa.Uuid),
    sa.Column("outcome", sa.String),
    sa.Column("status_code", sa.Integer),
    *(sa.Column(name, sa.String) for name in ("method", "path", "request_id", "client_address")),
    sa.Column("prev_hash", sa.String),
    sa.Column("hash", sa.String),
)


def _reseal(*, keyed_before: bool) -> None:
    """Verify every row under the current scheme, then rewrite every hash under the other."""
    bind = op.get_bind()
    rows: list[dict[str, Any]] = [
        dict(row._mapping)
        for row in bind.execute(sa.select(*_AUDIT_EVENT.c).order_by(_AUDIT_EVENT.c.seq))
    ]
    if not rows:
        return
    key = _key()

    def old(values: dict[str, Any], prev: str) -> str:
        return event_hash(values, prev, key) if keyed_before else legacy_event_hash(values, prev)

    def new(values: dict[str, Any], prev: str) -> str:
        return legacy_event_hash(values, prev) if keyed_before else event_hash(values, prev, key)

    updates = []
    expected, resealed = GENESIS_HASH, GENESIS_HASH
    for values in rows:
        if values["prev_hash"] != expected or old(values, expected) != values["hash"]:
            raise RuntimeError(
                f"audit trail broken at seq {values['seq']}: refusing to re-seal it "
                "(run `python -m app verify-audit`; with a keyed chain, is MINERAL_AUDIT_KEY "
                "the service's key?)"
            )
        expected = values["hash"]
        sealed = new(values, resealed)
        updates.append({"seq": values["seq"], "prev": resealed, "hash": sealed})
        resealed = sealed
    statement = sa.text("UPDATE audit_event SET prev_hash = :prev, hash = :hash WHERE seq = :seq")
    if bind.dialect.name == "postgresql":
        op.execute("ALTER TABLE audit_event DISABLE TRIGGER audit_event_no_change")
        bind.execute(statement, updates)
        op.execute("ALTER TABLE audit_event ENABLE TRIGGER audit_event_no_change")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_event_no_update")
        bind.execute(statement, updates)
        op.execute(
            "CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON audit_event "
            f"BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END"
        )


def upgrade() -> None:
    with op.batch_alter_table("api_key") as batch:
        batch.add_column(sa.Column("revoked_by", sa.String(length=200), nullable=True))
    _reseal(keyed_before=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP FUNCTION IF EXISTS {_LEGACY_SIGNATURE}")
        op.execute(_append_rows_function())


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS audit_append_rows(jsonb, text)")
        op.execute(_LEGACY_APPEND)
    _reseal(keyed_before=True)
    with op.batch_alter_table("api_key") as batch:
        batch.drop_column("revoked_by")
