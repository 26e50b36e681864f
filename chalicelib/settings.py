"""One typed settings object, read from the environment. Nothing else reads os.environ."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class WeChatSettings:
    appid: str
    mch_id: str
    api_key: str = field(repr=False)
    base_url: str
    sign_type: str  # MD5 or HMAC-SHA256
    cert_path: str
    key_path: str


@dataclass(frozen=True)
class AlipaySettings:
    partner: str
    md5_key: str = field(repr=False)
    private_key_pem: str = field(repr=False)
    alipay_public_key_pem: str = field(repr=False)
    sign_type: str  # MD5 or RSA2
    gateway_url: str


@dataclass(frozen=True)
class PayEaseSettings:
    mid: str
    md5_key: str = field(repr=False)
    gateway_url: str


@dataclass(frozen=True)
class Settings:
    stage: str
    region: str
    aws_endpoint_url: str | None
    table_prefix: str
    bucket: str
    public_base_url: str  # where channels reach our callbacks and shoppers reach our pages
    sandbox_enabled: bool
    max_body_bytes: int
    quote_ttl_seconds: int
    fx_max_age_seconds: int
    wechat: WeChatSettings
    alipay: AlipaySettings
    payease: PayEaseSettings
    http_timeout_seconds: float
    log_level: str

    @property
    def is_prod(self) -> bool:
        return self.stage == "prod"


# Demo credentials for the sandbox channels only. They are the public test-vector values from the
# channel specs, never real keys; prod must set every one of them through the environment.
_SANDBOX_WECHAT_KEY = "192006250b4c09247ec02edce69f6a2d"


def load(env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    stage = env.get("KAURI_STAGE", "dev")
    sandbox_enabled = _bool(env.get("KAURI_SANDBOX_ENABLED"), default=stage != "prod") and stage != "prod"
    public = env.get("KAURI_PUBLIC_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
    default_sandbox = public + "/sandbox"
    return Settings(
        stage=stage,
        region=env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION") or "ap-southeast-2",
        aws_endpoint_url=env.get("KAURI_AWS_ENDPOINT_URL") or None,
        table_prefix=env.get("KAURI_TABLE_PREFIX", f"kauri-{stage}-"),
        bucket=env.get("KAURI_BUCKET", f"kauri-{stage}-files"),
        public_base_url=public,
        sandbox_enabled=sandbox_enabled,
        max_body_bytes=int(env.get("KAURI_MAX_BODY_BYTES", "65536")),
        quote_ttl_seconds=int(env.get("KAURI_QUOTE_TTL_SECONDS", "900")),
        fx_max_age_seconds=int(env.get("KAURI_FX_MAX_AGE_SECONDS", str(36 * 3600))),
        wechat=WeChatSettings(
            appid=env.get("KAURI_WECHAT_APPID", "wxd930ea5d5a258f4f"),
            mch_id=env.get("KAURI_WECHAT_MCH_ID", "10000100"),
            api_key=env.get("KAURI_WECHAT_API_KEY", _SANDBOX_WECHAT_KEY if stage != "prod" else ""),
            base_url=env.get("KAURI_WECHAT_BASE_URL", default_sandbox + "/wechat").rstrip("/"),
            sign_type=env.get("KAURI_WECHAT_SIGN_TYPE", "HMAC-SHA256"),
            cert_path=env.get("KAURI_WECHAT_CERT_PATH", ""),
            key_path=env.get("KAURI_WECHAT_KEY_PATH", ""),
        ),
        alipay=AlipaySettings(
            partner=env.get("KAURI_ALIPAY_PARTNER", "2088101122136241"),
            md5_key=env.get("KAURI_ALIPAY_MD5_KEY", "760bdzec6y9goq7ctyx96ezkz78287de" if stage != "prod" else ""),
            private_key_pem=env.get("KAURI_ALIPAY_PRIVATE_KEY_PEM", ""),
            alipay_public_key_pem=env.get("KAURI_ALIPAY_PUBLIC_KEY_PEM", ""),
            sign_type=env.get("KAURI_ALIPAY_SIGN_TYPE", "MD5"),
            gateway_url=env.get("KAURI_ALIPAY_GATEWAY_URL", default_sandbox + "/alipay/gateway.do"),
        ),
        payease=PayEaseSettings(
            mid=env.get("KAURI_PAYEASE_MID", "6001"),
            md5_key=env.get("KAURI_PAYEASE_MD5_KEY", "test" if stage != "prod" else ""),
            gateway_url=env.get("KAURI_PAYEASE_GATEWAY_URL", default_sandbox + "/payease").rstrip("/"),
        ),
        http_timeout_seconds=float(env.get("KAURI_HTTP_TIMEOUT_SECONDS", "10")),
        log_level=env.get("KAURI_LOG_LEVEL", "INFO"),
    )


@lru_cache(maxsize=1)
def get() -> Settings:
    return load()


def reset() -> None:
    """Forget the cached settings (tests change the environment between cases)."""
    get.cache_clear()
