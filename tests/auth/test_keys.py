from __future__ import annotations

import hashlib
import re

from app.auth import keys
from app.auth.principal import ROLE_SCOPES, Role, Scope


def test_generated_key_has_the_documented_shape_and_parses_back() -> None:
    full_key, prefix, secret_hash = keys.generate_key()

    assert re.fullmatch(r"mlk_[a-z2-7]{12}_[A-Za-z0-9_-]{43}", full_key)
    parsed = keys.parse_key(full_key)
    assert parsed is not None
    assert parsed[0] == prefix
    assert secret_hash == hashlib.sha256(parsed[1].encode()).hexdigest()
    assert parsed[1] not in secret_hash


def test_generated_keys_differ_in_prefix_and_secret() -> None:
    generated = [keys.generate_key() for _ in range(200)]

    assert len({full for full, _, _ in generated}) == 200
    assert len({prefix for _, prefix, _ in generated}) == 200


def test_secret_with_underscores_still_parses() -> None:
    secret = "_" * 10 + "a" * 33
    assert keys.parse_key(f"mlk_abcdefghijk2_{secret}") == ("abcdefghijk2", secret)


def test_malformed_keys_do_not_parse() -> None:
    _, prefix, _ = keys.generate_key()
    for text in (
        "",
        "mlk_",
        f"mlk_{prefix}",
        f"mlk_{prefix}_short",
        f"mlk_{prefix.upper()}_{'a' * 43}",
        f"xyz_{prefix}_{'a' * 43}",
        f"mlk_{prefix}_{'a' * 43} ",
        f"mlk_{prefix}_{'a' * 42}!",
    ):
        assert keys.parse_key(text) is None, text


def test_secret_matches_only_its_own_hash() -> None:
    full_key, _, secret_hash = keys.generate_key()
    parsed = keys.parse_key(full_key)
    assert parsed is not None

    assert keys.secret_matches(parsed[1], secret_hash)
    assert not keys.secret_matches(parsed[1][:-1] + "x", secret_hash)
    assert not keys.secret_matches(parsed[1], "0" * 64)


def test_only_mlk_tokens_count_as_api_keys() -> None:
    assert keys.looks_like_api_key("mlk_anything")
    assert not keys.looks_like_api_key("eyJhbGciOiJSUzI1NiJ9.e30.sig")


def test_admin_scopes_exclude_patient_data() -> None:
    admin = ROLE_SCOPES[Role.ADMIN]

    assert Scope.KEYS_ADMIN in admin
    assert Scope.AUDIT_READ in admin
    assert not {Scope.PATIENTS_READ, Scope.PANELS_READ, Scope.PLANS_READ} & admin


def test_only_admins_manage_keys_and_only_clinicians_write_plans() -> None:
    assert [role for role in Role if Scope.KEYS_ADMIN in ROLE_SCOPES[role]] == [Role.ADMIN]
    assert [role for role in Role if Scope.PLANS_WRITE in ROLE_SCOPES[role]] == [Role.CLINICIAN]
    assert [role for role in Role if Scope.PANELS_WRITE in ROLE_SCOPES[role]] == [Role.INTEGRATION]
