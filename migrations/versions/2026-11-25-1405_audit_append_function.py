"""audit append function

Revision ID: 9e6a3c4d1b52
Revises: 8d5f2b3c0a41
Create Date: 2026-11-25 14:05:00+00:00

PostgreSQL only: one call takes the audit chain's lock, reads the chain's tail with a fresh
snapshot (after the lock) and inserts the new row linked to it, so a request spends one round
trip, not three, and holds the lock only from this call to its commit.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "9e6a3c4d1b52"
down_revision: str | None = "8d5f2b3c0a41"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Must match app.audit.repository.CHAIN_LOCK_KEY ("min_audi" in ASCII).
CHAIN_LOCK_KEY = 7883953978624795753


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"""
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
                -- an older snapshot would read a stale tail and fork the chain
                RAISE EXCEPTION 'audit rows need READ COMMITTED, not %%',
                    current_setting('transaction_isolation');
            END IF;
            PERFORM pg_advisory_xact_lock({CHAIN_LOCK_KEY});
            SELECT hash INTO tail FROM audit_event ORDER BY seq DESC LIMIT 1;
            tail := coalesce(tail, p_genesis);
            INSERT INTO audit_event (
                id, occurred_at, organization_id, principal_id, principal_kind, role, action,
                resource_type, resource_id, patient_id, outcome, status_code, method, path,
                request_id, client_address, prev_hash, hash
            ) VALUES (
                p_id, p_occurred_at, p_organization_id, p_principal_id, p_principal_kind, p_role,
                p_action, p_resource_type, p_resource_id, p_patient_id, p_outcome,
                p_status_code, p_method, p_path, p_request_id, p_client_address, tail,
                encode(sha256(convert_to(p_before || tail || p_after, 'UTF8')), 'hex')
            );
        END $$
        """.replace("%%", "%")
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "DROP FUNCTION IF EXISTS audit_append(uuid, timestamptz, uuid, text, text, text, text, "
        "text, text, uuid, text, integer, text, text, text, text, text, text, text)"
    )
