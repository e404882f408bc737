"""Application setup: settings, database, dependencies, middleware, errors, docs, logging."""
