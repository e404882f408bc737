"""OIDC token validation against a locally generated JWKS; no network."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from app.auth.oidc import JwksFile, JwksUrl, OidcConfigError, OidcIdentity, OidcVerifier
from app.auth.principal import Rejection, Role
from app.core.config import Settings
from tests.auth.tokens import (
    AUDIENCE,
    ISSUER,
    SigningKeys,
    claims,
    hs256_with_public_key,
    make_signing_keys,
    sign,
    unsigned,
)


@pytest.fixture(scope="module")
def signing_keys() -> SigningKeys:
    return make_signing_keys()


@pytest.fixture
def jwks_path(tmp_path: Path, signing_keys: SigningKeys) -> Path:
    return signing_keys.write_jwks(tmp_path / "jwks.json")


@pytest.fixture
def verifier(jwks_path: Path) -> OidcVerifier:
    return OidcVerifier(
        source=JwksFile(jwks_path),
        issuer=ISSUER,
        audience=AUDIENCE,
        algorithms=["RS256", "ES256"],
        leeway_seconds=30,
    )


def verify(verifier: OidcVerifier, token: str) -> OidcIdentity | Rejection:
    return asyncio.run(verifier.verify(token))


def refused(verifier: OidcVerifier, token: str) -> str:
    result = verify(verifier, token)
    assert isinstance(result, Rejection), result
    return result.reason


def test_valid_rsa_token_maps_to_identity(
    verifier: OidcVerifier, signing_keys: SigningKeys
) -> None:
    result = verify(verifier, sign(signing_keys.rsa_key, claims()))

    assert result == OidcIdentity(
        issuer=ISSUER,
        subject="user-8f2c",
        organization_name="clinic-a",
        role=Role.CLINICIAN,
        display="dr.who",
    )


def test_valid_ec_token_is_accepted(verifier: OidcVerifier, signing_keys: SigningKeys) -> None:
    token = sign(signing_keys.ec_key, claims(role="admin"), algorithm="ES256", kid="ec-1")

    result = verify(verifier, token)

    assert isinstance(result, OidcIdentity)
    assert result.role is Role.ADMIN


def test_token_signed_by_another_key_is_refused(
    verifier: OidcVerifier, signing_keys: SigningKeys
) -> None:
    reason = refused(verifier, sign(signing_keys.other_rsa_key, claims()))
    assert "signature" in reason


def test_tampered_payload_is_refused(verifier: OidcVerifier, signing_keys: SigningKeys) -> None:
    header, _, signature = sign(signing_keys.rsa_key, claims()).split(".")
    forged_payload = sign(signing_keys.other_rsa_key, claims(role="admin")).split(".")[1]

    assert "signature" in refused(verifier, f"{header}.{forged_payload}.{signature}")


def test_wrong_issuer_is_refused(verifier: OidcVerifier, signing_keys: SigningKeys) -> None:
    token = sign(signing_keys.rsa_key, claims(iss="https://evil.example.test"))
    assert "issuer" in refused(verifier, token)


def test_wrong_audience_is_refused(verifier: OidcVerifier, signing_keys: SigningKeys) -> None:
    token = sign(signing_keys.rsa_key, claims(aud="another-api"))
    assert "audience" in refused(verifier, token)


def test_audience_list_containing_ours_is_accepted(
    verifier: OidcVerifier, signing_keys: SigningKeys
) -> None:
    token = sign(signing_keys.rsa_key, claims(aud=["account", AUDIENCE]))
    assert isinstance(verify(verifier, token), OidcIdentity)


def test_expired_token_is_refused(verifier: OidcVerifier, signing_keys: SigningKeys) -> None:
    now = int(time.time())
    token = sign(signing_keys.rsa_key, claims(iat=now - 600, exp=now - 31))
    assert "expired" in refused(verifier, token)


def test_token_expired_within_the_leeway_is_accepted(
    verifier: OidcVerifier, signing_keys: SigningKeys
) -> None:
    now = int(time.time())
    token = sign(signing_keys.rsa_key, claims(iat=now - 600, exp=now - 10))
    assert isinstance(verify(verifier, token), OidcIdentity)


def test_token_without_exp_is_refused(verifier: OidcVerifier, signing_keys: SigningKeys) -> None:
    body = claims()
    del body["exp"]
    assert "required claim" in refused(verifier, sign(signing_keys.rsa_key, body))


def test_not_yet_valid_token_is_refused(verifier: OidcVerifier, signing_keys: SigningKeys) -> None:
    token = sign(signing_keys.rsa_key, claims(nbf=int(time.time()) + 120))
    assert "not valid yet" in refused(verifier, token)


def test_alg_none_is_refused(verifier: OidcVerifier) -> None:
    assert "algorithm" in refused(verifier, unsigned(claims(role="admin")))


def test_hs256_signed_with_the_public_key_is_refused(
    verifier: OidcVerifier, signing_keys: SigningKeys
) -> None:
    token = hs256_with_public_key(claims(role="admin"), signing_keys.rsa_public_pem())
    assert "algorithm" in refused(verifier, token)


def test_hs256_is_refused_even_when_configured() -> None:
    with pytest.raises(OidcConfigError):
        OidcVerifier(
            source=JwksFile("unused.json"), issuer=ISSUER, audience=AUDIENCE, algorithms=["HS256"]
        )
    with pytest.raises(OidcConfigError):
        OidcVerifier(
            source=JwksFile("unused.json"), issuer=ISSUER, audience=AUDIENCE, algorithms=["none"]
        )


def test_algorithm_not_in_the_allowed_list_is_refused(
    jwks_path: Path, signing_keys: SigningKeys
) -> None:
    rsa_only = OidcVerifier(
        source=JwksFile(jwks_path), issuer=ISSUER, audience=AUDIENCE, algorithms=["RS256"]
    )
    token = sign(signing_keys.ec_key, claims(), algorithm="ES256", kid="ec-1")
    assert "algorithm" in refused(rsa_only, token)


def test_algorithm_must_fit_the_key_the_kid_names(
    verifier: OidcVerifier, signing_keys: SigningKeys
) -> None:
    # An RS256 token that points at the EC key: the key decides the algorithm, not the token.
    token = sign(signing_keys.rsa_key, claims(), algorithm="RS256", kid="ec-1")
    assert "algorithm" in refused(verifier, token)


def test_unknown_kid_is_refused(verifier: OidcVerifier, signing_keys: SigningKeys) -> None:
    assert "kid" in refused(verifier, sign(signing_keys.rsa_key, claims(), kid="rotated-away"))


def test_token_without_kid_is_refused(verifier: OidcVerifier, signing_keys: SigningKeys) -> None:
    assert "kid" in refused(verifier, sign(signing_keys.rsa_key, claims(), kid=None))


def test_garbage_is_refused(verifier: OidcVerifier) -> None:
    assert "not a JWT" in refused(verifier, "definitely-not-a-token")


def test_missing_organization_claim_is_refused(
    verifier: OidcVerifier, signing_keys: SigningKeys
) -> None:
    token = sign(signing_keys.rsa_key, claims(organization=None))
    assert "organization" in refused(verifier, token)


def test_missing_role_claim_is_refused(verifier: OidcVerifier, signing_keys: SigningKeys) -> None:
    assert "role" in refused(verifier, sign(signing_keys.rsa_key, claims(role=None)))


def test_unknown_role_is_refused(verifier: OidcVerifier, signing_keys: SigningKeys) -> None:
    assert "role" in refused(verifier, sign(signing_keys.rsa_key, claims(role="superuser")))


def test_role_list_with_exactly_one_known_role_is_accepted(
    verifier: OidcVerifier, signing_keys: SigningKeys
) -> None:
    token = sign(signing_keys.rsa_key, claims(role=["offline_access", "clinician"]))
    result = verify(verifier, token)
    assert isinstance(result, OidcIdentity)
    assert result.role is Role.CLINICIAN


def test_role_list_with_two_known_roles_is_refused(
    verifier: OidcVerifier, signing_keys: SigningKeys
) -> None:
    token = sign(signing_keys.rsa_key, claims(role=["clinician", "admin"]))
    assert "role" in refused(verifier, token)


def test_claim_names_are_configurable_and_may_be_nested_paths(
    jwks_path: Path, signing_keys: SigningKeys
) -> None:
    verifier = OidcVerifier(
        source=JwksFile(jwks_path),
        issuer=ISSUER,
        audience=AUDIENCE,
        algorithms=["RS256"],
        organization_claim="https://mineral-labs.example/org",
        role_claim="realm_access.role",
    )
    body = claims(organization=None, role=None)
    body["https://mineral-labs.example/org"] = "clinic-b"
    body["realm_access"] = {"role": "integration"}

    result = verify(verifier, sign(signing_keys.rsa_key, body))

    assert isinstance(result, OidcIdentity)
    assert (result.organization_name, result.role) == ("clinic-b", Role.INTEGRATION)


def test_jwks_file_is_read_once(
    verifier: OidcVerifier, jwks_path: Path, signing_keys: SigningKeys
) -> None:
    assert isinstance(verify(verifier, sign(signing_keys.rsa_key, claims())), OidcIdentity)
    jwks_path.unlink()
    assert isinstance(verify(verifier, sign(signing_keys.rsa_key, claims())), OidcIdentity)


def test_missing_jwks_file_refuses_tokens(tmp_path: Path, signing_keys: SigningKeys) -> None:
    verifier = OidcVerifier(
        source=JwksFile(tmp_path / "absent.json"),
        issuer=ISSUER,
        audience=AUDIENCE,
        algorithms=["RS256"],
    )
    assert "JWKS" in refused(verifier, sign(signing_keys.rsa_key, claims()))


class FakeJwksEndpoint:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document: dict[str, Any] | None = document
        self.calls = 0

    def __call__(self) -> Any:
        self.calls += 1
        if self.document is None:
            raise OSError("identity provider unreachable")
        return self.document


def url_verifier(endpoint: FakeJwksEndpoint, *, cache_seconds: float) -> OidcVerifier:
    source = JwksUrl("https://idp.example.test/jwks", cache_seconds=cache_seconds, fetch=endpoint)
    return OidcVerifier(source=source, issuer=ISSUER, audience=AUDIENCE, algorithms=["RS256"])


def test_jwks_url_is_fetched_once_within_the_cache_time(signing_keys: SigningKeys) -> None:
    endpoint = FakeJwksEndpoint(signing_keys.jwks())
    verifier = url_verifier(endpoint, cache_seconds=300)

    for _ in range(3):
        assert isinstance(verify(verifier, sign(signing_keys.rsa_key, claims())), OidcIdentity)

    assert endpoint.calls == 1


def test_jwks_url_is_refetched_after_the_cache_time(signing_keys: SigningKeys) -> None:
    endpoint = FakeJwksEndpoint(signing_keys.jwks())
    verifier = url_verifier(endpoint, cache_seconds=0)

    verify(verifier, sign(signing_keys.rsa_key, claims()))
    verify(verifier, sign(signing_keys.rsa_key, claims()))

    assert endpoint.calls == 2


def test_unknown_kids_do_not_cause_a_fetch_per_token(signing_keys: SigningKeys) -> None:
    endpoint = FakeJwksEndpoint(signing_keys.jwks())
    verifier = url_verifier(endpoint, cache_seconds=300)
    verify(verifier, sign(signing_keys.rsa_key, claims()))

    for index in range(5):
        refused(verifier, sign(signing_keys.rsa_key, claims(), kid=f"made-up-{index}"))

    assert endpoint.calls == 1


def test_jwks_outage_keeps_the_last_good_keys(signing_keys: SigningKeys) -> None:
    endpoint = FakeJwksEndpoint(signing_keys.jwks())
    verifier = url_verifier(endpoint, cache_seconds=0)
    verify(verifier, sign(signing_keys.rsa_key, claims()))
    endpoint.document = None

    result = verify(verifier, sign(signing_keys.rsa_key, claims()))

    assert isinstance(result, OidcIdentity)
    assert endpoint.calls == 2


def test_unreachable_jwks_without_a_previous_set_refuses(signing_keys: SigningKeys) -> None:
    endpoint = FakeJwksEndpoint(signing_keys.jwks())
    endpoint.document = None
    verifier = url_verifier(endpoint, cache_seconds=300)

    assert "JWKS" in refused(verifier, sign(signing_keys.rsa_key, claims()))


def test_settings_without_a_jwks_disable_oidc() -> None:
    assert OidcVerifier.from_settings(Settings(environment="test")) is None


def test_settings_with_a_jwks_but_no_audience_are_refused(jwks_path: Path) -> None:
    settings = Settings(environment="test", oidc_jwks_file=str(jwks_path), oidc_issuer=ISSUER)
    with pytest.raises(OidcConfigError):
        OidcVerifier.from_settings(settings)


def test_settings_build_a_working_verifier(jwks_path: Path, signing_keys: SigningKeys) -> None:
    settings = Settings(
        environment="test",
        oidc_jwks_file=str(jwks_path),
        oidc_issuer=ISSUER,
        oidc_audience=AUDIENCE,
    )
    verifier = OidcVerifier.from_settings(settings)
    assert verifier is not None
    assert isinstance(verify(verifier, sign(signing_keys.rsa_key, claims())), OidcIdentity)
