"""Access control: API keys and OIDC bearer tokens resolved to a `Principal` with scopes."""
