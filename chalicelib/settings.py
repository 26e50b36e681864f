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

    # Sandbox-only RSA material (generated for Kauri's simulator, never used with real Alipay):
    # our merchant private key, and the public half of the simulator's "Alipay" key pair.
    # Prod reads both from the environment; these defaults apply only when stage != prod.
    SANDBOX_PRIVATE_KEY_PEM = (
        "-----BEGIN RSA PRIVATE KEY-----\n"
        "MIIEogIBAAKCAQEAhZOE/zAjl7TZLTW5RqCIeISuo/ITAvN3J7OYRZl/ElRfEPnh\n"
        "IutqwUoS+qoUYKsz++mzuWq0PkSSpwBQcuLI2x3703/yx6tV9eRnJHMvsQOhp5Gt\n"
        "/RkFJ75gGv75a5dwJqnA6gF7nYiJHExbjodcooubPfgjff52xOAs4ZDqVuMTmH5p\n"
        "DWNMoBOOr4l17hJ/GXLiCenNl1rhNAUE5egzeR6u+phaZzJ+hwtZ8w6/f/N66r3I\n"
        "j0ArU6X/KefK70RQ1leMqGWhKHjXuJG887sK6dD9+dKi/vlJ3yg5iCQyXHXzNIxy\n"
        "0d2nE4xt1VIqVhUcCMQW3LPodRpvZRHkBxc+tQIDAQABAoIBABwjWsFc9Sp4hMVS\n"
        "y2A24fitTpKnpFybR+77lKiYsJ1+W3ZahRQTjm4AOiZGnLtOZUl8TglRkn2JeXEn\n"
        "jkrdPh12X/2KNuzbyWRehGG3yAScdLm1ZPbrhdv87QbSzlzdTlk+qi5BOLaTM/rb\n"
        "lO/d0ORGz2GK+4MHjyJi7OFpYwwBRM7mvyMYicRnYmCBHJb4zSllxWF1Lu2XRjEQ\n"
        "0ZIQrnErFLnROWozKYg7UoY2AGX1YQezzyswiUB0fqFXlJozYhVPc07q7+Z50Qd/\n"
        "dZ4dC4tN3rb0eB3K8CJB0FwOAxPOsSFX0/k2mcFpxODs/66eZrc4Gu16Pivo+Op5\n"
        "BVGRLHMCgYEAuh2o/ftMbZAqeVlXYPk/ziaribQbEAiiRtYoYFHZ8I+5LM9QvnH9\n"
        "+6RWccpUlpZuECiqW8GPb9Ry6YEm5T3YPDUgq97AaRBBuoiUybfFAgLMsGsO/X+X\n"
        "QNYGQ7HDuUvH/E76vPcrc/QILb4XZEytCZy2285nSbnzCFTYTpqvqCsCgYEAt7uA\n"
        "pYzL7lVq2CoQDZfUiKZmYtXzOgGJpWJlQiSpRjS4F9pNSdcPvqvW8puOagACUzwA\n"
        "U+i5BbnbWGGSLaeOshr84bCBXnP90wR+shly69RKJWVkAgYi5+eGGfZWsrhAK6bi\n"
        "W9W8ABwyZ2iEPYJfV1OuBsfZmi0EP2Zz3odnZJ8CgYAEyy7HG+nkCIqPhZWSkdjq\n"
        "3mQcr97iktZbLLjtgi4y3ADQ/qX9wcHg8WKom6WCG23KTMHWiy2+m6I6EXGHBgjD\n"
        "xDqLMrmR+zE2NL5gU7NnUdsj0B4auWaT7O9MXw/Dfggwn3gl1dfwrKBpTTQdCTyL\n"
        "utWa474VUAzKciUAIUvU8QKBgBLcpPBZ6/WjvzxB1TQQCjmdG5W58SZbUg4wc8S+\n"
        "jsIuV1fbiWOzOGKSsZZmcdBf/90bo8z5b0UvN11zZtZZBUUzkBJ7VEymC8DGDVur\n"
        "USj0ukfsiL/McXjtQ88WgwAF+lCA6WwUHSDFxEbpa+oEoFUOuiboDWbOiEkZ83s8\n"
        "21hxAoGAFeC519wHBeIj2GE153lac2G9PpwPDcfDUnktwiDrt7WzA2SsmsUTpOv5\n"
        "5zX558kYIWLdlUuuIG8Z1kHpIumpx+DvyiLQMyIc3iLs9ZWCsMN77Ee0QGszClw8\n"
        "iAj7crMXS4nsf8AW/fDFJ0IKUVOwEH2lnT6u/6GgunMyQYzDxV0=\n"
        "-----END RSA PRIVATE KEY-----\n"
    )
    SANDBOX_ALIPAY_PUBLIC_KEY_PEM = (
        "-----BEGIN PUBLIC KEY-----\n"
        "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAsQtRyWeDYH6A/ygoltDT\n"
        "Nq4MpGUSYss/+6D+DZ9LZI0/lXBJVbleZAYKys7vMUIXrqgLCoiUyfTypoON3AUS\n"
        "WAIs+esW56pmc4ZaDKfkHheDFGhAQ4HAFXslo3bi37K2TGLgs7E6bT+YDtBIQSzb\n"
        "KOCdwsjTyhG/zLJhN+yD+2vKzo5Aa/SUZFI2de2sx4clZvqyZ5mH6xxDjqTy3WZP\n"
        "RWobN1F8szzWT6mS1NXWT4/eJltC9KzUczR6n+FNMALrfMrE1OFx3lYYUZnSBnSU\n"
        "jnBOzndCPn3Kt3ZSPUORZDK9QMFJGaKFIstMV5AbNYKLd/kuWBd4W1ClD0Ze7SW+\n"
        "xwIDAQAB\n"
        "-----END PUBLIC KEY-----\n"
    )


@dataclass(frozen=True)
class PayEaseSettings:
    mid: str
    md5_key: str = field(repr=False)
    gateway_url: str            # payment host (pay.yizhifubj.com in prod)
    api_url: str = ""           # query/refund host (api.yizhifubj.com in prod); "" = gateway_url
    refund_operator: str = "kauri"  # v_refoprt: the operator name PayEase records on refunds


@dataclass(frozen=True)
class WeChatOASettings:
    """Our WeChat Official Account, which sends merchants' staff their payment alerts (spec §14)."""
    appid: str
    appsecret: str = field(repr=False)
    template_id: str            # the "payment received" template: amount, store, time, reference
    base_url: str               # https://api.weixin.qq.com in prod


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
    http_timeout_seconds: int  # whole seconds (requests takes ints)
    log_level: str
    # channel -> currency -> (min, max) in minor units; max None = no ceiling
    channel_limits: dict = field(default_factory=dict)
    release_requires_recon: bool = False
    # Reconciliation: each channel's contracted fee in basis points (a channel not listed: fee unchecked),
    # and how far the channel's FX rate may stray from the one shown before the day's report flags it.
    recon_fee_bps: dict = field(default_factory=lambda: {"wechat": 200, "alipay": 180})
    fx_variance_threshold_bps: int = 50
    statements_queue: str = ""                # SQS queue the bucket notifies of new statements/ objects
    # Money jobs (release_funds, auto_withdraw); prod sets the payout source account.
    release_lookback_days: int = 60           # how far back release_funds looks for unreleased payments
    withdrawal_local_hour: int = 17           # auto_withdraw acts at this hour, Pacific/Auckland time
    payout_source_account: str = ""           # our NZD settlement account (16 digits), the batch file header
    payout_subscriber_name: str = "Kauri Payments"
    wechat_oa: WeChatOASettings | None = None

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
    table_prefix = env.get("KAURI_TABLE_PREFIX", f"kauri-{stage}-")
    return Settings(
        stage=stage,
        region=env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION") or "ap-southeast-2",
        aws_endpoint_url=env.get("KAURI_AWS_ENDPOINT_URL") or None,
        table_prefix=table_prefix,
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
            private_key_pem=env.get("KAURI_ALIPAY_PRIVATE_KEY_PEM",
                                    AlipaySettings.SANDBOX_PRIVATE_KEY_PEM if stage != "prod" else ""),
            alipay_public_key_pem=env.get("KAURI_ALIPAY_PUBLIC_KEY_PEM",
                                          AlipaySettings.SANDBOX_ALIPAY_PUBLIC_KEY_PEM if stage != "prod" else ""),
            sign_type=env.get("KAURI_ALIPAY_SIGN_TYPE", "MD5"),
            gateway_url=env.get("KAURI_ALIPAY_GATEWAY_URL", default_sandbox + "/alipay/gateway.do"),
        ),
        payease=PayEaseSettings(
            mid=env.get("KAURI_PAYEASE_MID", "444"),  # the spec's public test merchant
            md5_key=env.get("KAURI_PAYEASE_MD5_KEY", "test" if stage != "prod" else ""),
            gateway_url=env.get("KAURI_PAYEASE_GATEWAY_URL", default_sandbox + "/payease").rstrip("/"),
            api_url=env.get("KAURI_PAYEASE_API_URL",
                            env.get("KAURI_PAYEASE_GATEWAY_URL", default_sandbox + "/payease")).rstrip("/"),
            refund_operator=env.get("KAURI_PAYEASE_REFUND_OPERATOR", "kauri"),
        ),
        http_timeout_seconds=int(env.get("KAURI_HTTP_TIMEOUT_SECONDS", "10")),
        log_level=env.get("KAURI_LOG_LEVEL", "INFO"),
        channel_limits=_limits(env.get("KAURI_CHANNEL_LIMITS")),
        release_requires_recon=_bool(env.get("KAURI_RELEASE_REQUIRES_RECON"), default=False),
        fx_variance_threshold_bps=int(env.get("KAURI_FX_VARIANCE_THRESHOLD_BPS", "50")),
        statements_queue=env.get("KAURI_STATEMENTS_QUEUE") or (table_prefix + "statements"),
        release_lookback_days=int(env.get("KAURI_RELEASE_LOOKBACK_DAYS", "60")),
        withdrawal_local_hour=int(env.get("KAURI_WITHDRAWAL_LOCAL_HOUR", "17")),
        payout_source_account=env.get("KAURI_PAYOUT_SOURCE_ACCOUNT", "0102420100194000" if stage != "prod" else ""),
        payout_subscriber_name=env.get("KAURI_PAYOUT_SUBSCRIBER_NAME", "Kauri Payments"),
        wechat_oa=WeChatOASettings(
            appid=env.get("KAURI_WECHAT_OA_APPID", "wx5c1e0a9b7d3f2e41" if stage != "prod" else ""),
            appsecret=env.get("KAURI_WECHAT_OA_APPSECRET",
                              "3f9a1c7e5b2d8f4a6c0e9b1d7a5f3c2e" if stage != "prod" else ""),
            template_id=env.get("KAURI_WECHAT_OA_TEMPLATE_ID", "Kq1Xw8mN3pR7tV2yB5cF9hJ4lZ6sD0gA-payment-rcvd"
                                if stage != "prod" else ""),
            base_url=env.get("KAURI_WECHAT_OA_BASE_URL", default_sandbox + "/wechat_oa").rstrip("/"),
        ),
    )


# Per-channel amount limits (minor units). Defaults follow what the channels accept for cross-border
# retail and tuition; ops override them with KAURI_CHANNEL_LIMITS='{"wechat": {"NZD": [1, 500000]}}'.
DEFAULT_LIMITS = {
    "wechat": {"NZD": (1, 5_000_000), "AUD": (1, 5_000_000)},
    "alipay": {"NZD": (1, 5_000_000), "AUD": (1, 5_000_000)},
    "payease": {"NZD": (100, 10_000_000), "AUD": (100, 10_000_000), "CNY": (100, 50_000_000)},
}


def _limits(text: str | None) -> dict:
    import json

    limits = {ch: dict(v) for ch, v in DEFAULT_LIMITS.items()}
    if text:
        for channel, per_ccy in json.loads(text).items():
            for ccy, (lo, hi) in per_ccy.items():
                limits.setdefault(channel, {})[ccy] = (int(lo), None if hi is None else int(hi))
    return limits


@lru_cache(maxsize=1)
def get() -> Settings:
    return load()


def reset() -> None:
    """Forget the cached settings (tests change the environment between cases)."""
    get.cache_clear()
