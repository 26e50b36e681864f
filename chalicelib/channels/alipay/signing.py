"""Alipay MAPI signatures: the pre-sign string, MD5 and RSA/RSA2 (PKCS#1 v1.5, Base64).

`cryptography` is imported inside the RSA functions: MD5 merchants never pay for it at cold start.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from functools import lru_cache
from typing import Mapping

# Never part of the signed text (spec §1.2).
_UNSIGNED = ("sign", "sign_type")
SIGN_TYPES = ("MD5", "RSA", "RSA2")


class SignatureError(ValueError):
    """A key is missing/unusable or the sign type is unknown (not: a signature that does not match)."""


def presign(params: Mapping[str, object]) -> str:
    """Sorted `k=v&...` of every non-empty parameter except sign/sign_type, values raw (not URL-encoded)."""
    items = sorted((k, str(v)) for k, v in params.items() if k not in _UNSIGNED and v is not None and v != "")
    return "&".join(f"{k}={v}" for k, v in items)


# ---- MD5 -------------------------------------------------------------------------------------

def md5_sign_text(text: str, key: str) -> str:
    if not key:
        raise SignatureError("MD5 key not configured")
    return hashlib.md5((text + key).encode("utf-8")).hexdigest()


def md5_sign(params: Mapping[str, object], key: str) -> str:
    return md5_sign_text(presign(params), key)


def md5_verify_text(text: str, signature: str, key: str) -> bool:
    if not key or not signature:
        return False
    expected = md5_sign_text(text, key)
    return hmac.compare_digest(expected.encode("ascii"), signature.strip().lower().encode("utf-8", "replace"))


# ---- RSA (SHA1) / RSA2 (SHA256) --------------------------------------------------------------

def _hash(sign_type: str):
    from cryptography.hazmat.primitives import hashes

    if sign_type == "RSA2":
        return hashes.SHA256()
    if sign_type == "RSA":
        return hashes.SHA1()
    raise SignatureError(f"not an RSA sign type: {sign_type}")


@lru_cache(maxsize=8)
def _private_key(pem: str):
    from cryptography.hazmat.primitives import serialization

    if not pem:
        raise SignatureError("RSA private key not configured")
    try:
        return serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    except (ValueError, TypeError) as exc:
        raise SignatureError("RSA private key unusable") from exc


@lru_cache(maxsize=8)
def _public_key(pem: str):
    from cryptography.hazmat.primitives import serialization

    if not pem:
        raise SignatureError("RSA public key not configured")
    try:
        return serialization.load_pem_public_key(pem.encode("ascii"))
    except (ValueError, TypeError) as exc:
        raise SignatureError("RSA public key unusable") from exc


def public_pem_of(private_pem: str) -> str:
    """The public half of a private key, as SubjectPublicKeyInfo PEM."""
    from cryptography.hazmat.primitives import serialization

    return _private_key(private_pem).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def rsa_sign_text(text: str, private_pem: str, sign_type: str = "RSA2") -> str:
    from cryptography.hazmat.primitives.asymmetric import padding

    raw = _private_key(private_pem).sign(text.encode("utf-8"), padding.PKCS1v15(), _hash(sign_type))
    return base64.b64encode(raw).decode("ascii")


def rsa_verify_text(text: str, signature: str, public_pem: str, sign_type: str = "RSA2") -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import padding

    if not signature or len(signature) > 2048:
        return False
    # Some stacks decode '+' as a space on the way in (spec §1.3); Base64 never contains spaces.
    cleaned = signature.replace(" ", "+").replace("\n", "").replace("\r", "")
    try:
        raw = base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        _public_key(public_pem).verify(raw, text.encode("utf-8"), padding.PKCS1v15(), _hash(sign_type))
        return True
    except InvalidSignature:
        return False


# ---- one door for callers --------------------------------------------------------------------

def sign_text(text: str, sign_type: str, *, md5_key: str = "", private_pem: str = "") -> str:
    if sign_type == "MD5":
        return md5_sign_text(text, md5_key)
    if sign_type in ("RSA", "RSA2"):
        return rsa_sign_text(text, private_pem, sign_type)
    raise SignatureError(f"unsupported sign_type {sign_type!r}")


def verify_text(text: str, signature: str, sign_type: str, *, md5_key: str = "", public_pem: str = "") -> bool:
    """True only for a matching signature; unknown sign types and missing keys verify as False."""
    if sign_type == "MD5":
        return md5_verify_text(text, signature, md5_key)
    if sign_type in ("RSA", "RSA2"):
        if not public_pem:
            return False
        try:
            return rsa_verify_text(text, signature, public_pem, sign_type)
        except SignatureError:
            return False
    return False


def sign(params: Mapping[str, object], sign_type: str, *, md5_key: str = "", private_pem: str = "") -> str:
    return sign_text(presign(params), sign_type, md5_key=md5_key, private_pem=private_pem)


def verify(params: Mapping[str, str], sign_type: str, *, md5_key: str = "", public_pem: str = "") -> bool:
    """Verify params that carry their own `sign` (sign_type is the one the message claims)."""
    return verify_text(presign(params), params.get("sign", "") or "", sign_type, md5_key=md5_key, public_pem=public_pem)


def signed(params: Mapping[str, object], sign_type: str, *, md5_key: str = "", private_pem: str = "") -> dict[str, str]:
    """A copy of params (empty values dropped) with sign and sign_type added."""
    out = {k: str(v) for k, v in params.items() if v is not None and v != "" and k not in _UNSIGNED}
    out["sign"] = sign(out, sign_type, md5_key=md5_key, private_pem=private_pem)
    out["sign_type"] = sign_type
    return out
