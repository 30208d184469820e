"""Bearer tokens (JWT) checked with PyJWT.

Keys come from the project file: an HMAC `secret_key` (HS256, as in PyFrame's
``AuthMiddleware``), a PEM public key or certificate (`public_key_file`), or a JWKS file
(`jwks_file`, keys chosen by the token's ``kid``). The accepted algorithms are pinned by the
kind of key, never read from the token: an HMAC secret accepts only HS256/384/512, an RSA key
RS*/PS*, an EC key the one ES algorithm of its curve, an Ed25519/Ed448 key EdDSA, and a JWK
that names its ``alg`` only that one. So ``alg: none`` and the RS256-to-HS256 confusion (a
public key used as an HMAC secret) are refused by construction.

`exp` is required (a token that never expires is refused); `nbf` and `iat` are checked when
present, all with `leeway` seconds of clock skew; `iss` and `aud` when configured.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.auth import need

_HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
_RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
_CURVE_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512",
                     "secp256k1": "ES256K"}
#: RFC 7518 §3.2: an HS256 key must be at least as long as the hash output.
MIN_SECRET_BYTES = 32


class TokenRejected(Exception):
    """The token is not acceptable; ``str()`` is the RFC 6750 error_description."""


@dataclass(frozen=True)
class VerifyKey:
    key: Any  # a cryptography public key, or bytes for HMAC
    algorithms: tuple[str, ...]


def algorithms_for(key: Any) -> tuple[str, ...]:
    """The algorithms a key may verify, from its type."""
    if isinstance(key, bytes | str):
        return _HMAC_ALGORITHMS
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    if isinstance(key, rsa.RSAPublicKey):
        return _RSA_ALGORITHMS
    if isinstance(key, ec.EllipticCurvePublicKey):
        alg = _CURVE_ALGORITHMS.get(key.curve.name)
        if alg is None:
            raise ValueError(f"unsupported elliptic curve {key.curve.name}")
        return (alg,)
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return ("EdDSA",)
    raise ValueError(f"unsupported key type {type(key).__name__}")


def _pem_key(data: bytes) -> Any:
    need("cryptography", "cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    if b"PRIVATE KEY" in data:
        raise ValueError("holds a private key: give the public key (openssl pkey -pubout)")
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            return x509.load_pem_x509_certificate(data).public_key()
        return load_pem_public_key(data)
    except ValueError:
        raise ValueError("is not a PEM public key or certificate "
                         "(-----BEGIN PUBLIC KEY----- ...)") from None


class KeyRing:
    """The keys of one `auth` entry; `select` picks the one for a token's header."""

    def __init__(self, by_kid: Mapping[str, VerifyKey], default: VerifyKey | None) -> None:
        self.by_kid = dict(by_kid)
        self.default = default

    @classmethod
    def load(cls, *, secret_key: str | None, public_key_file: Path | None,
             jwks_file: Path | None) -> KeyRing:
        """Read the keys; ValueError/OSError with a message for the user when they are bad."""
        need("jwt", "PyJWT")
        if secret_key is not None:
            return cls({}, VerifyKey(secret_key.encode("utf-8"), _HMAC_ALGORITHMS))
        if public_key_file is not None:
            key = _pem_key(public_key_file.read_bytes())
            return cls({}, VerifyKey(key, algorithms_for(key)))
        if jwks_file is not None:
            return cls._from_jwks(jwks_file.read_text(encoding="utf-8"))
        raise ValueError("no key: give secret_key, public_key_file or jwks_file")

    @classmethod
    def _from_jwks(cls, text: str) -> KeyRing:
        need("cryptography", "cryptography")
        import jwt

        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"is not JSON: {exc}") from None
        entries = data.get("keys") if isinstance(data, dict) else None
        if not isinstance(entries, list) or not entries:
            raise ValueError("is not a JWKS: no 'keys' array")
        by_kid: dict[str, VerifyKey] = {}
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise ValueError(f"keys[{i}] is not an object")
            if entry.get("use") not in (None, "sig"):
                continue  # an encryption key has no say in signatures
            try:
                jwk = jwt.PyJWK(entry)
            except jwt.PyJWTError as exc:
                raise ValueError(f"keys[{i}]: {exc}") from None
            alg = entry.get("alg")
            key = jwk.key
            algs = (str(alg),) if alg else algorithms_for(key)
            if alg and alg not in algorithms_for(key):
                raise ValueError(f"keys[{i}]: alg {alg!r} does not fit a {jwk.key_type} key")
            by_kid[str(entry.get("kid", f"#{i}"))] = VerifyKey(key, algs)
        if not by_kid:
            raise ValueError("holds no signing key")
        default = next(iter(by_kid.values())) if len(by_kid) == 1 else None
        return cls(by_kid, default)

    def select(self, header: Mapping[str, Any]) -> VerifyKey:
        kid = header.get("kid")
        if kid is not None and self.by_kid:
            found = self.by_kid.get(str(kid))
            if found is None:
                raise TokenRejected("unknown key id (kid)")
            return found
        if self.default is None:
            raise TokenRejected("the token names no key id (kid)")
        return self.default

    def __repr__(self) -> str:
        return f"<KeyRing kids={sorted(self.by_kid)} default={self.default is not None}>"


class TokenVerifier:
    """Verifies one bearer token against a `KeyRing` and the configured claims."""

    def __init__(self, keys: KeyRing, *, issuer: str | None, audience: str | None,
                 leeway: float) -> None:
        import jwt

        self.jwt = jwt
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        required = ["exp"] + (["iss"] if issuer else []) + (["aud"] if audience else [])
        self.options: Any = {"require": required, "verify_aud": audience is not None}

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims; TokenRejected saying why not."""
        jwt = self.jwt
        try:
            header = jwt.get_unverified_header(token)
            key = self.keys.select(header)
            claims = jwt.decode(token, key.key, algorithms=list(key.algorithms),
                                options=self.options, issuer=self.issuer,
                                audience=self.audience, leeway=self.leeway)
        except TokenRejected:
            raise
        except jwt.PyJWTError as exc:
            raise TokenRejected(self._why(exc)) from None
        return claims

    def _why(self, exc: Exception) -> str:
        """The error_description for a PyJWT error (the most specific class first)."""
        jwt = self.jwt
        if isinstance(exc, jwt.MissingRequiredClaimError):
            return f"the token has no {exc.claim!r} claim"
        reasons = (
            (jwt.ExpiredSignatureError, "the token has expired"),
            (jwt.ImmatureSignatureError, "the token is not valid yet"),
            (jwt.InvalidIssuerError, "wrong issuer"),
            (jwt.InvalidAudienceError, "wrong audience"),
            (jwt.InvalidAlgorithmError, "algorithm not allowed for this key"),
            (jwt.InvalidSignatureError, "bad signature"),
            (jwt.DecodeError, "malformed token"),
        )
        return next((why for cls, why in reasons if isinstance(exc, cls)), "invalid token")

    def __repr__(self) -> str:
        return f"<TokenVerifier {self.keys!r} iss={self.issuer!r} aud={self.audience!r}>"
