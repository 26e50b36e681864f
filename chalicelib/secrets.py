"""Secrets: channel credentials from AWS Secrets Manager, webhook signing secrets under a KMS envelope.

Channel credentials (prod): each channel's settings carry a `secret_id` (default
`kauri-<stage>-<channel>`, test mode `kauri-<stage>-<channel>-test`; KAURI_<CHANNEL>_SECRET_ID overrides)
instead of keys, and `resolve(cfg)` fills the keys in from the secret's JSON when a channel first needs
them. A container caches what it read for SECRET_CACHE_SECONDS. Rotation without downtime
(README "Secrets"): a new key is stored as a new version (AWSCURRENT; the old one becomes AWSPREVIOUS);
a callback that does not verify with the cached current key is tried with AWSPREVIOUS and, at most
once per REFRESH_MIN_SECONDS, with a freshly read AWSCURRENT, so callbacks signed with either key are
accepted while the channel and every container move over.

Webhook signing secrets: `seal(plain)` makes an envelope (a fresh AES-256-GCM data key from KMS
GenerateDataKey under the stage's key; only the KMS-encrypted data key, nonce and ciphertext are
stored); `open_sealed(envelope)` asks KMS to decrypt the data key, only when a webhook is signed.
"""
from __future__ import annotations

import base64
import json
import os
from dataclasses import fields, replace
from typing import Any

from chalicelib import clock, log, settings

SECRET_CACHE_SECONDS = 300      # a rotated key reaches every container within this, or at once on a miss
REFRESH_MIN_SECONDS = 30        # a callback that verifies with nothing re-reads AWSCURRENT at most this often

# Which settings fields a channel's secret may supply (all else stays configuration).
SECRET_FIELDS = {
    "WeChatSettings": ("api_key", "cert_pem", "key_pem", "appsecret"),
    "AlipaySettings": ("md5_key", "private_key_pem", "alipay_public_key_pem"),
    "PayEaseSettings": ("md5_key",),
    "WeChatOASettings": ("appsecret",),
}

_cache: dict[tuple[str, str], tuple[dict | None, int]] = {}   # (secret id, version stage) -> (values, read at)
_forced_at: dict[str, int] = {}
_clients: dict[str, Any] = {}


class SecretUnavailable(Exception):
    """The secret a channel needs could not be read (never carries the secret)."""


def _client(service: str):
    client = _clients.get(service)
    if client is None:
        # botocore's own client, as pynamodb makes: importing boto3 would add boto3 and s3transfer (with its
        # thread and multiprocessing machinery) to the cold start of every payment, for nothing used here.
        import botocore.session

        s = settings.get()
        client = _clients[service] = botocore.session.get_session().create_client(
            service, region_name=s.region, endpoint_url=s.aws_endpoint_url)
    return client


def reset() -> None:
    """Forget cached secrets and clients (tests, a new embedded AWS)."""
    _cache.clear()
    _forced_at.clear()
    _clients.clear()


def values(secret_id: str, version_stage: str = "AWSCURRENT") -> dict | None:
    """The secret's JSON object at that version stage (None: no such version), cached per container."""
    now = clock.epoch()
    hit = _cache.get((secret_id, version_stage))
    if hit is not None and 0 <= now - hit[1] < SECRET_CACHE_SECONDS:
        return hit[0]
    sm = _client("secretsmanager")
    try:
        answer = sm.get_secret_value(SecretId=secret_id, VersionStage=version_stage)
    except sm.exceptions.ResourceNotFoundException:
        if version_stage == "AWSCURRENT":
            raise SecretUnavailable(f"secret {secret_id} not found") from None
        found = None
    except Exception as exc:
        raise SecretUnavailable(f"secret {secret_id}: {type(exc).__name__}") from None
    else:
        try:
            found = json.loads(answer["SecretString"])
        except (KeyError, ValueError):
            raise SecretUnavailable(f"secret {secret_id} is not a JSON object") from None
        if not isinstance(found, dict):
            raise SecretUnavailable(f"secret {secret_id} is not a JSON object")
    _cache[(secret_id, version_stage)] = (found, now)
    return found


def refresh(secret_id: str) -> bool:
    """Drop this container's copy of a secret so the next read asks Secrets Manager; rate-limited."""
    now = clock.epoch()
    last = _forced_at.get(secret_id)
    if last is not None and 0 <= now - last < REFRESH_MIN_SECONDS:
        return False
    _forced_at[secret_id] = now
    for key in [k for k in _cache if k[0] == secret_id]:
        _cache.pop(key, None)
    return True


def resolve(cfg, version_stage: str = "AWSCURRENT"):
    """The channel settings with their credentials filled in from their secret (cfg itself when it has
    no secret_id, as on dev and sandbox stages). None for a version that does not exist (AWSPREVIOUS
    before the first rotation)."""
    if cfg is None or not getattr(cfg, "secret_id", ""):
        return cfg
    found = values(cfg.secret_id, version_stage)
    if found is None:
        return None
    names = {f.name for f in fields(cfg)}
    changes: dict[str, str] = {"secret_id": ""}
    for name in SECRET_FIELDS.get(type(cfg).__name__, ()):
        value = found.get(name)
        if not isinstance(value, str) or not value:
            continue
        if name in ("cert_pem", "key_pem"):   # WeChat's client certificate: requests wants files
            changes[name.replace("_pem", "_path")] = _pem_file(cfg.secret_id, version_stage, name, value)
        elif name in names:
            changes[name] = value
    return replace(cfg, **changes)


def _pem_file(secret_id: str, version_stage: str, name: str, pem: str) -> str:
    import hashlib
    import tempfile

    digest = hashlib.sha256(f"{secret_id}\n{version_stage}\n{name}\n{pem}".encode()).hexdigest()[:24]
    path = os.path.join(tempfile.gettempdir(), f"kauri-{digest}.pem")
    if not os.path.exists(path):
        fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(pem)
        os.replace(path + ".tmp", path)
    return path


# ---- webhook signing secrets: KMS envelope ---------------------------------------------------------

def seal(plain: str, purpose: bytes = b"kauri-webhook-secret") -> dict:
    """Encrypt a webhook signing secret (or another secret-bearing text, named by `purpose`, which the
    envelope is bound to) under the stage's KMS key (envelope; see module doc)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key_id = settings.get().webhook_kms_key
    data_key = _client("kms").generate_data_key(KeyId=key_id, KeySpec="AES_256")
    nonce = os.urandom(12)
    sealed = AESGCM(data_key["Plaintext"]).encrypt(nonce, plain.encode("utf-8"), purpose)
    return {"v": 1, "key": base64.b64encode(data_key["CiphertextBlob"]).decode(),
            "nonce": base64.b64encode(nonce).decode(), "ct": base64.b64encode(sealed).decode()}


def open_sealed(envelope: dict, purpose: bytes = b"kauri-webhook-secret") -> str:
    """The plaintext of a sealed webhook secret (a KMS Decrypt of its data key): only to sign."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if not isinstance(envelope, dict) or envelope.get("v") != 1:
        raise SecretUnavailable("unknown webhook secret envelope")
    data_key = _client("kms").decrypt(CiphertextBlob=base64.b64decode(envelope["key"]))["Plaintext"]
    plain = AESGCM(data_key).decrypt(base64.b64decode(envelope["nonce"]), base64.b64decode(envelope["ct"]),
                                     purpose)
    return plain.decode("utf-8")


def warn_unavailable(what: str, exc: Exception) -> None:
    log.error("secret_unavailable", what=what, error=str(exc)[:200])
