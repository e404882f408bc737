"""Immutable, versioned, per-organization sets with one active (reference ranges, plan rules).

A set is never changed once stored: a change is a new version of the same name, and
activation retires the previously active set. What every such set shares lives here (the
model mixin and its indexes, the repository, import/activate under a savepoint, the bounded
cache of compiled sets, the upload reader, the HTTP helpers); each domain keeps only its
document, its checks, its parsers and its routes.
"""
