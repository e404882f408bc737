"""the audit chain's tail read by its own index, whatever the statistics say

Revision ID: c9e1a3b5d7f2
Revises: b8d0f2a4c6e1
Create Date: 2026-12-07 15:00:00+00:00

``audit_append_rows`` reads its chain's tail with
``WHERE chain = p_chain ORDER BY seq DESC LIMIT 1``. plpgsql keeps a generic plan of it, and
once ``audit_event`` has statistics (the first ANALYZE, e.g. autovacuum's) that plan walks the
primary key backwards, filtering on the chain: the planner expects a row of any chain within a
few rows, since ``chain = p_chain`` makes the order on (chain, seq) the same as on seq. A chain
whose last row is far back, or that has none (a process's first append to it), was read to the
start of the table while holding the chain's lock: measured at 281,394 buffers and 108 ms at
280,000 audit rows (seconds at ten million), and POST throughput halved in the benchmark after
an ANALYZE (1,265 -> 678-750 req/s).

The tail is now read as ``WHERE chain >= p_chain AND chain <= p_chain ORDER BY chain DESC, seq
DESC LIMIT 1``: the same row, but a range keeps the planner from dropping ``chain`` from the
order, and only ``ix_audit_event_chain_seq`` gives that order without sorting every row of the
table, so the plan is the one-row index read for any statistics (tests/audit/
test_tail_plan.py). The function is rewritten in place from its stored text; the downgrade
puts the old statement back. SQLite reads chain 0 only, and its planner takes the index.
"""

import re
from collections.abc import Sequence

from alembic import op

revision: str = "c9e1a3b5d7f2"
down_revision: str | None = "b8d0f2a4c6e1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FUNCTION = "audit_append_rows(jsonb, text, smallint)"
_OLD_TEXT = (
    "SELECT hash INTO tail FROM audit_event WHERE chain = p_chain\n"
    "                ORDER BY seq DESC LIMIT 1;"
)
# The statement as migration c7e1f3a5b9d2 wrote it, whatever whitespace separates its words.
_OLD = re.compile(r"\s+".join(map(re.escape, _OLD_TEXT.split())))
_NEW_TEXT = (
    "SELECT hash INTO tail FROM audit_event\n"
    "                -- A range, not chain = p_chain: with an equality the planner drops chain\n"
    "                -- from the order and may walk the primary key (migration c9e1a3b5d7f2).\n"
    "                WHERE chain >= p_chain AND chain <= p_chain\n"
    "                ORDER BY chain DESC, seq DESC LIMIT 1;"
)
_NEW = re.compile(re.escape(_NEW_TEXT))


def _rewrite(pattern: re.Pattern[str], replacement: str) -> None:
    bind = op.get_bind()
    definition = bind.exec_driver_sql(
        f"SELECT pg_get_functiondef('{_FUNCTION}'::regprocedure)"
    ).scalar_one()
    rewritten, found = pattern.subn(lambda _match: replacement, definition)
    if found != 1:
        raise RuntimeError(f"{_FUNCTION}: the tail statement to rewrite was not found")
    # pg_get_functiondef gives a complete CREATE OR REPLACE FUNCTION statement; sent with no
    # parameters, its text (the RAISE formats' % included) reaches the server as it is.
    bind.exec_driver_sql(rewritten)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _rewrite(_OLD, _NEW_TEXT)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _rewrite(_NEW, _OLD_TEXT)
