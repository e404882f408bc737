"""Identifier systems as absolute URIs (FHIR Identifier.system is a `uri`; HAPI's validator
refuses `acme-lab` or `LABSYS^ACME`).

A name that is not an absolute URI (an HL7 v2 assigning-authority namespace such as `HOSP`, a
native panel `source` such as `acme-lab`) becomes one through the configured aliases
(`app/data/identifier_systems.yaml`) or, failing that, the documented default URN scheme:

- identifier systems: ``urn:mineral-labs:system:<name, percent-encoded>``
- panel sources (DiagnosticReport.identifier.system): ``urn:mineral-labs:source:<name>``

The mapping is reversible (``name_of``), so a search by either form finds the record.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import quote, unquote

SYSTEM_PREFIX = "urn:mineral-labs:system:"
SOURCE_PREFIX = "urn:mineral-labs:source:"

# RFC 3986 scheme, then either an authority (`//host`) or, for URNs and OIDs, a colon-separated
# name (`urn:oid:1.2.3`, `urn:uuid:...`).
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def is_absolute_uri(text: str) -> bool:
    """An RFC 3986 absolute URI: ``http://x/y``, ``urn:oid:1.2``, ``urn:a``: yes. ``acme-lab``,
    ``LABSYS^ACME``, ``SSA``: no. Web schemes need an authority (``http://host``)."""
    if any(ch.isspace() for ch in text) or "^" in text or not _SCHEME.match(text):
        return False
    scheme, _, rest = text.partition(":")
    if scheme.lower() in ("http", "https"):
        return rest.startswith("//") and len(rest) > 2
    return bool(rest)


def _as_uri(name: str, aliases: Mapping[str, str] | None, prefix: str) -> str:
    """``name`` unchanged when it already is a URI, else its alias, else under ``prefix``."""
    if is_absolute_uri(name):
        return name
    if aliases and name in aliases:
        return aliases[name]
    return prefix + quote(name, safe="")


def system_uri(name: str, aliases: Mapping[str, str] | None = None) -> str:
    """``name`` as an identifier system URI (unchanged when it already is one)."""
    return _as_uri(name, aliases, SYSTEM_PREFIX)


def source_uri(source: str, aliases: Mapping[str, str] | None = None) -> str:
    """A panel source (the sender's namespace for accessions) as a URI."""
    return _as_uri(source, aliases, SOURCE_PREFIX)


def name_of(uri: str, prefix: str) -> str | None:
    """The name a default-scheme URI was made from, or None."""
    if not uri.startswith(prefix):
        return None
    return unquote(uri.removeprefix(prefix))
