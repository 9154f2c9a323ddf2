"""Token verification: algorithms from the configured keys only, every refusal named, rotation."""

from __future__ import annotations

import time

import jwt
import pytest

from broadcaster import ConfigError, Settings
from broadcaster.auth import Grants, InvalidToken, Keyring, TokenVerifier, issue_token

from ..support.tokens import PREVIOUS_SECRET, SECRET, KeyPair, claims, forge, hs256


def verifier(**settings) -> TokenVerifier:
    config = Settings(**settings)
    return TokenVerifier(Keyring.from_settings(config), audience=config.auth_audience, issuer=config.auth_issuer)


def reason(check: TokenVerifier, token: str) -> str:
    with pytest.raises(InvalidToken) as caught:
        check.verify(token)
    return caught.value.reason


def test_valid_hs256_token_gives_identity_with_grants_and_expiry():
    token = hs256(subscribe=["sensors.*"], publish=["sensors.kitchen"], sub="dash")
    identity = verifier(auth_secret=SECRET).verify(token)
    assert identity.subject == "dash"
    assert identity.grants == Grants(("sensors.*",), ("sensors.kitchen",), False)
    assert time.time() < identity.expires_at <= time.time() + 301


@pytest.mark.parametrize("algorithm", ["RS256", "ES256", "EdDSA"])
def test_public_key_algorithms_follow_from_the_key(tmp_path, algorithm):
    pair = KeyPair(algorithm, tmp_path)
    check = verifier(auth_public_key=str(pair.path))
    assert check.keyring.algorithms == [algorithm]
    assert check.verify(pair.sign(subscribe=["a"])).grants.subscribe == ("a",)


def test_several_public_keys_are_tried_in_turn(tmp_path):
    old, new = KeyPair("RS256", tmp_path), KeyPair("RS256", tmp_path)
    check = verifier(auth_public_key=f"{old.path},{new.path}")
    assert check.verify(old.sign()).grants == Grants()
    assert check.verify(new.sign()).grants == Grants()


def test_previous_secret_is_still_accepted_for_rotation():
    check = verifier(auth_secret=SECRET, auth_previous_secret=PREVIOUS_SECRET)
    assert check.verify(hs256(PREVIOUS_SECRET, publish=["x"])).grants.publish == ("x",)
    assert check.verify(hs256(SECRET, publish=["y"])).grants.publish == ("y",)
    assert reason(check, hs256("a-third-secret-that-nobody-configured-here")) == "bad signature"


def test_bad_signature():
    assert reason(verifier(auth_secret=SECRET), hs256("another-secret-0123456789-abcdefghijk")) == "bad signature"


def test_alg_none_is_refused_as_unsupported():
    token = forge({"alg": "none", "typ": "JWT"}, claims(admin=True), None)
    assert reason(verifier(auth_secret=SECRET), token) == "unsupported algorithm"


def test_hs256_signed_with_the_rsa_public_key_is_refused_when_rs256_is_configured(tmp_path):
    """Algorithm confusion: the public key's PEM bytes used as an HMAC secret must verify nothing."""
    pair = KeyPair("RS256", tmp_path)
    token = forge({"alg": "HS256", "typ": "JWT"}, claims(admin=True), pair.public_pem)
    assert reason(verifier(auth_public_key=str(pair.path)), token) == "unsupported algorithm"
    # With a secret configured as well, HS256 is checked against that secret only.
    both = verifier(auth_public_key=str(pair.path), auth_secret=SECRET)
    assert reason(both, token) == "bad signature"


def test_rs256_token_is_refused_when_only_a_secret_is_configured(tmp_path):
    assert reason(verifier(auth_secret=SECRET), KeyPair("RS256", tmp_path).sign()) == "unsupported algorithm"


def test_expired_and_not_yet_valid():
    check = verifier(auth_secret=SECRET)
    assert reason(check, hs256(ttl_s=-5)) == "expired"
    assert reason(check, hs256(nbf=int(time.time()) + 120)) == "not yet valid"


def test_exp_is_required():
    token = jwt.encode({"broadcaster": {"subscribe": ["a"]}}, SECRET, algorithm="HS256")
    with pytest.raises(InvalidToken, match="no exp claim"):
        verifier(auth_secret=SECRET).verify(token)


def test_audience_and_issuer_are_checked_when_set():
    check = verifier(auth_secret=SECRET, auth_audience="dash", auth_issuer="https://id.example")
    assert check.verify(hs256(aud="dash", iss="https://id.example")).grants == Grants()
    assert reason(check, hs256(aud="other", iss="https://id.example")) == "wrong audience"
    assert reason(check, hs256(aud="dash", iss="https://evil.example")) == "wrong issuer"
    assert reason(check, hs256(iss="https://id.example")) == "malformed"  # no aud at all


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("garbage", "malformed"),
        ("", "malformed"),
        ("a.b.c", "malformed"),
        ("x" * 9000, "malformed"),
        # A well-formed HS256 header over a payload that is not JSON: its signature is checked first.
        ("eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2ln", "bad signature"),
    ],
    ids=["word", "empty", "three-parts", "too-long", "not-json-payload"],
)
def test_garbage_is_refused(token, expected):
    assert reason(verifier(auth_secret=SECRET), token) == expected


def test_malformed_grants_claim_is_refused():
    token = jwt.encode(claims() | {"broadcaster": {"subscribe": "x"}}, SECRET, algorithm="HS256")
    with pytest.raises(InvalidToken, match="broadcaster.subscribe must be a list"):
        verifier(auth_secret=SECRET).verify(token)


def test_issue_token_round_trips_through_the_verifier():
    token = issue_token(SECRET.encode(), subscribe=["a.*"], publish=["a.b"], admin=True, ttl_s=60, subject="me")
    identity = verifier(auth_secret=SECRET).verify(token)
    assert identity.subject == "me" and identity.grants == Grants(("a.*",), ("a.b",), True)
    assert identity.expires_at - time.time() == pytest.approx(60, abs=2)
    with pytest.raises(ValueError, match="is invalid"):
        issue_token(SECRET.encode(), subscribe=["bad pattern"])


def test_secret_file_is_read_without_its_trailing_newline(tmp_path):
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n")
    assert verifier(auth_secret_file=str(path)).verify(hs256()).subject is None


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"auth_secret": "short"}, "needs at least 32"),
        ({"auth_secret_file": "/nonexistent/secret"}, "cannot read /nonexistent/secret"),
        ({"auth_public_key": "/nonexistent.pem"}, "cannot read /nonexistent.pem"),
    ],
    ids=["short-secret", "missing-secret-file", "missing-key-file"],
)
def test_bad_keys_are_config_errors(settings, message):
    with pytest.raises(ConfigError, match=message):
        Keyring.from_settings(Settings(**settings))


def test_a_file_that_is_not_a_public_key_is_a_config_error(tmp_path):
    path = tmp_path / "key.pem"
    path.write_text("not a key")
    with pytest.raises(ConfigError, match="not a PEM public key"):
        Keyring.from_settings(Settings(auth_public_key=str(path)))


def test_small_rsa_and_other_curves_are_refused(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    pem = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    small = tmp_path / "small.pem"
    small.write_bytes(rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key().public_bytes(*pem))
    with pytest.raises(ConfigError, match="1024-bit RSA key"):
        Keyring.from_settings(Settings(auth_public_key=str(small)))
    p384 = tmp_path / "p384.pem"
    p384.write_bytes(ec.generate_private_key(ec.SECP384R1()).public_key().public_bytes(*pem))
    with pytest.raises(ConfigError, match="ES256 needs P-256"):
        Keyring.from_settings(Settings(auth_public_key=str(p384)))


def test_a_verified_token_is_remembered_until_its_expiry(monkeypatch):
    check = verifier(auth_secret=SECRET)
    token = hs256(publish=["a"], ttl_s=60)
    first = check.verify(token)
    assert check.verify(token) is first  # no second verification for the same bytes
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert reason(check, tampered) == "bad signature"  # a different token is verified on its own
    assert first.expires_at is not None
    monkeypatch.setattr(time, "time", lambda: first.expires_at + 1)
    assert reason(check, token) == "expired"  # a remembered token still expires
