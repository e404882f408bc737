"""Treatment plans, as pure logic: the facts rules read, plan items, the rule engine, safety.

No FastAPI, no SQLAlchemy. Services build `PlanFacts` from stored records, call `draft()` and
`check()`, and store what they return.
"""
