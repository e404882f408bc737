"""audit chain striped into 64 chains, each with its own lock

Revision ID: c7e1f3a5b9d2
Revises: 50868c101b58
Create Date: 2026-12-02 14:40:00+00:00

One chain meant one advisory lock, held by every appender from its append to its commit:
every write (and every audited read) of every worker and replica queued behind it. Rows now
carry ``chain`` (0-63); each chain links its own rows (prev_hash is the previous row OF THAT
CHAIN) under its own lock, and a process appends to the few chains it picked, so appenders
of different processes rarely meet. Existing rows are chain 0, unchanged: their links and
hashes stay valid (the chain number is not hashed; moving a row to another chain breaks the
links of both, which verification reports).

``audit_append_rows(rows, expected_prev, chain)`` replaces the two-argument function. The
downgrade restores that one and refuses while rows of any chain other than 0 exist (one chain
cannot be re-linked without re-sealing with the key).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.audit.chain import GENESIS_HASH

revision: str = "c7e1f3a5b9d2"
down_revision: str | None = "50868c101b58"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Must match app.audit.repository.CHAIN_LOCK_KEY and CHAIN_STRIPES.
CHAIN_LOCK_KEY = 7883953978624795753
CHAIN_STRIPES = 64
_COLUMNS = (
    "id, occurred_at, organization_id, principal_id, principal_kind, role, action, "
    "resource_type, resource_id, patient_id, outcome, status_code, method, path, request_id, "
    "client_address"
)


def _function(striped: bool) -> str:
    values = ", ".join(f"r.{name.strip()}" for name in _COLUMNS.split(","))
    signature = "p_rows jsonb, p_expected_prev text" + (", p_chain smallint" if striped else "")
    chain = "p_chain" if striped else "0"
    # The unstriped body (the downgrade's) must not name the chain column: it is dropped.
    of_chain = f"WHERE chain = {chain}" if striped else ""
    columns = f"{_COLUMNS}, chain" if striped else _COLUMNS
    row_values = f"{values}, {chain}" if striped else values
    # Lock keys CHAIN_LOCK_KEY - chain: below the historical single key, never above the
    # bigint range.
    return f"""
        CREATE FUNCTION audit_append_rows({signature})
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
            IF {chain} < 0 OR {chain} >= {CHAIN_STRIPES} THEN
                RAISE EXCEPTION 'audit chain % does not exist', {chain};
            END IF;
            PERFORM pg_advisory_xact_lock({CHAIN_LOCK_KEY} - {chain});
            SELECT hash INTO tail FROM audit_event {of_chain}
                ORDER BY seq DESC LIMIT 1;
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
                INSERT INTO audit_event ({columns}, prev_hash, hash)
                VALUES ({row_values}, r.prev_hash, r.hash);
                prev := r.hash;
            END LOOP;
            RETURN NULL;
        END $$
    """


def upgrade() -> None:
    op.add_column(
        "audit_event",
        sa.Column("chain", sa.SmallInteger(), server_default=sa.text("0"), nullable=False),
    )
    op.create_index("ix_audit_event_chain_seq", "audit_event", ["chain", "seq"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS audit_append_rows(jsonb, text)")
        op.execute(_function(striped=True))


def downgrade() -> None:
    bind = op.get_bind()
    striped = bind.execute(sa.text("SELECT count(*) FROM audit_event WHERE chain <> 0")).scalar()
    if striped:
        raise RuntimeError(
            f"{striped} audit rows belong to chains other than 0: one chain cannot hold them "
            "without re-sealing the trail with the key"
        )
    if bind.dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS audit_append_rows(jsonb, text, smallint)")
        op.execute(_function(striped=False))
    op.drop_index("ix_audit_event_chain_seq", table_name="audit_event")
    with op.batch_alter_table("audit_event") as batch:
        batch.drop_column("chain")
