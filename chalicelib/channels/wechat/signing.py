"""WeChat Pay v2 signatures (spec §2): MD5 or HMAC-SHA256 over the sorted, non-empty parameters."""
from __future__ import annotations

import hashlib
import hmac
from typing import Any, Mapping

MD5 = "MD5"
HMAC_SHA256 = "HMAC-SHA256"
SIGN_TYPES = (MD5, HMAC_SHA256)


def _text(value: Any) -> str:
    if isinstance(value, bool):  # bool is an int; never a wire value
        raise TypeError("booleans are not WeChat parameter values")
    return value if isinstance(value, str) else str(value)


def string_to_sign(params: Mapping[str, Any], key: str) -> str:
    """`k1=v1&k2=v2...&key=KEY`: every field but `sign`, empty values dropped, ASCII order, raw values."""
    pairs = []
    for name in sorted(params):
        if name == "sign":
            continue
        value = params[name]
        if value is None:
            continue
        text = _text(value)
        if text == "":
            continue
        pairs.append(f"{name}={text}")
    pairs.append(f"key={key}")
    return "&".join(pairs)


def sign(params: Mapping[str, Any], key: str, sign_type: str = MD5) -> str:
    """The uppercase-hex v2 signature of `params` with the institution API key."""
    if not key:
        raise ValueError("WeChat API key is not configured")
    message = string_to_sign(params, key).encode("utf-8")
    if sign_type == MD5:
        return hashlib.md5(message).hexdigest().upper()
    if sign_type == HMAC_SHA256:
        # The HMAC message is the same string, `&key=...` included (spec §2 step 6).
        return hmac.new(key.encode("utf-8"), message, hashlib.sha256).hexdigest().upper()
    raise ValueError(f"unsupported sign_type {sign_type!r}")


def guess_sign_type(signature: str) -> str | None:
    """Spec §2 fallback for messages without sign_type: 32 hex chars is MD5, 64 is HMAC-SHA256."""
    if len(signature) == 32:
        return MD5
    if len(signature) == 64:
        return HMAC_SHA256
    return None


def verify(params: Mapping[str, Any], key: str, default_sign_type: str | None = MD5) -> bool:
    """True if `params["sign"]` matches, computed over ALL other received fields (unknown ones too).

    The algorithm is the message's own `sign_type` if present, else `default_sign_type`; with
    `default_sign_type=None` it is inferred from the signature's length.
    """
    received = params.get("sign")
    if not isinstance(received, str) or not received or not key:
        return False
    sign_type = params.get("sign_type") or default_sign_type or guess_sign_type(received)
    if sign_type not in SIGN_TYPES:
        return False
    try:
        expected = sign(params, key, sign_type)
    except (TypeError, ValueError):
        return False
    return hmac.compare_digest(expected.encode("ascii"), received.upper().encode("utf-8"))


# ---- refund result notifications: `req_info` (AES-256-ECB, PKCS#7, base64) ----------------------
# The notification carries no `sign`; knowing the API key is what authenticates it. The AES key is the
# 32 ASCII characters of the lowercase hex MD5 of the API key (WeChat's refund notification page).

class ReqInfoError(ValueError):
    """`req_info` that is not base64, not whole AES blocks, or not padded under our key."""


def req_info_key(api_key: str) -> bytes:
    if not api_key:
        raise ValueError("WeChat API key is not configured")
    return hashlib.md5(api_key.encode("utf-8")).hexdigest().lower().encode("ascii")


def _ecb(api_key: str):
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    return Cipher(algorithms.AES(req_info_key(api_key)), modes.ECB())  # ECB: WeChat's choice, not ours


def encrypt_req_info(plaintext: bytes, api_key: str) -> str:
    """What WeChat puts in `req_info` (used by the sandbox)."""
    import base64

    from cryptography.hazmat.primitives import padding

    padder = padding.PKCS7(128).padder()
    data = padder.update(plaintext) + padder.finalize()
    enc = _ecb(api_key).encryptor()
    return base64.b64encode(enc.update(data) + enc.finalize()).decode("ascii")


def decrypt_req_info(text: str, api_key: str) -> bytes:
    """The plaintext XML inside `req_info`; ReqInfoError if it is not ours or not well formed."""
    import base64
    import binascii

    from cryptography.hazmat.primitives import padding

    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ReqInfoError("req_info is not base64") from None
    if not raw or len(raw) % 16:
        raise ReqInfoError("req_info is not whole AES blocks")
    dec = _ecb(api_key).decryptor()
    data = dec.update(raw) + dec.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(data) + unpadder.finalize()
    except ValueError:
        raise ReqInfoError("req_info does not decrypt under our key") from None
