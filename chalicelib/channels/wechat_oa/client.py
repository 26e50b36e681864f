"""WeChat Official Account client: a cached access token and template messages (wechat-pay spec §14).

The appsecret and the access token travel in query strings, so no URL is ever logged or put in an
error: log lines carry the API path only.
"""
from __future__ import annotations

import json
import re
import threading
from typing import Any

from chalicelib import clock, http, log, settings

TOKEN_PATH = "/cgi-bin/token"
SEND_PATH = "/cgi-bin/message/template/send"
AUTHORIZE_PATH = "/connect/oauth2/authorize"
SNS_TOKEN_PATH = "/sns/oauth2/access_token"
_OPENID = re.compile(r"^[A-Za-z0-9_\-]{6,64}$")
REFRESH_MARGIN = 300                     # renew this long before WeChat's expires_in runs out
MAX_RESPONSE_BYTES = 64 * 1024
TOKEN_ERRORS = frozenset({40001, 40014, 42001})   # invalid / not latest / expired access_token
RETRYABLE = frozenset({-1, 45009, 45011})         # system busy, daily or per-minute API limit
# The recipient or the template is wrong: sending the same message again cannot succeed.
PERMANENT = frozenset({40003, 40036, 40037, 43004, 43101, 47001, 47003})

_lock = threading.Lock()
_tokens: dict[str, tuple[str, int]] = {}   # appid -> (access_token, refresh at, epoch s): per container


class OAError(Exception):
    def __init__(self, code: int | str, message: str = "", retryable: bool = True):
        super().__init__(f"{code}: {message}" if message else str(code))
        self.code = code
        self.message = message
        self.retryable = retryable


class OfficialAccountClient:
    def __init__(self, config: settings.WeChatOASettings | None = None):
        self._config = config

    @property
    def config(self) -> settings.WeChatOASettings:
        from chalicelib import secrets

        cfg = secrets.resolve(self._config or settings.get().wechat_oa)
        if cfg is None or not cfg.appid or not cfg.appsecret:
            raise OAError("NOT_CONFIGURED", "WeChat Official Account appid/appsecret are not set")
        return cfg

    # ---- access token ---------------------------------------------------------------------------

    def access_token(self, fresh: bool = False) -> str:
        """One token per Official Account, reused until shortly before it expires."""
        cfg = self.config
        with _lock:
            cached = _tokens.get(cfg.appid)
            if cached and not fresh and clock.epoch() < cached[1]:
                return cached[0]
            answer = self._call("GET", TOKEN_PATH, {"grant_type": "client_credential", "appid": cfg.appid,
                                                    "secret": cfg.appsecret})
            token = answer.get("access_token")
            expires_in = answer.get("expires_in")
            if not isinstance(token, str) or not token or type(expires_in) is not int or expires_in <= 0:
                raise OAError("BAD_RESPONSE", "token answer without access_token/expires_in")
            _tokens[cfg.appid] = (token, clock.epoch() + max(expires_in - REFRESH_MARGIN, expires_in // 2))
            log.info("wechat_oa_token_renewed", appid=cfg.appid, expires_in=expires_in)
            return token

    # ---- template messages ------------------------------------------------------------------------

    def send_template(self, touser: str, data: dict[str, str], client_msg_id: str, timeout: int | None = None) -> int:
        """Send the configured template to one follower; WeChat's msgid. `client_msg_id` dedupes resends.
        `timeout`: seconds for the send (default: the configured HTTP timeout)."""
        cfg = self.config
        body = {"touser": touser, "template_id": cfg.template_id, "client_msg_id": client_msg_id,
                "data": {key: {"value": value} for key, value in data.items()}}
        for attempt in range(2):
            token = self.access_token(fresh=attempt > 0)
            try:
                answer = self._call("POST", SEND_PATH, {"access_token": token}, body, timeout)
            except OAError as exc:
                if exc.code in TOKEN_ERRORS and attempt == 0:
                    continue  # another process renewed the token, or it expired early: renew once
                raise
            msgid = answer.get("msgid")
            if type(msgid) is not int:
                raise OAError("BAD_RESPONSE", "send answer without msgid")
            return msgid
        raise OAError("TOKEN_REJECTED", "a freshly issued access_token was refused")  # pragma: no cover

    # ---- web OAuth (snsapi_base): a shopper's openid for JSAPI (wechat-pay spec §13) --------------

    def openid_for_code(self, code: str) -> str:
        """Exchange the single-use `code` WeChat handed the shopper's browser for their openid."""
        cfg = self.config
        answer = self._call("GET", SNS_TOKEN_PATH, {"appid": cfg.appid, "secret": cfg.appsecret, "code": code,
                                                    "grant_type": "authorization_code"})
        openid = answer.get("openid")
        if not isinstance(openid, str) or not _OPENID.match(openid):
            raise OAError("BAD_RESPONSE", "OAuth answer without a usable openid")
        return openid

    # ---- transport --------------------------------------------------------------------------------

    def _call(self, method: str, path: str, query: dict[str, str], body: dict | None = None,
              timeout: int | None = None) -> dict[str, Any]:
        import requests

        cfg = self.config
        started = clock.ticks()
        try:
            resp = http.session().request(
                method, cfg.base_url + path, params=query,
                data=None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8"),
                headers={"Content-Type": "application/json; charset=utf-8"} if body is not None else {},
                timeout=timeout or settings.get().http_timeout_seconds, allow_redirects=False)
        except requests.RequestException as exc:
            log.warning("wechat_oa_network_error", path=path, error=type(exc).__name__)
            raise OAError("NETWORK", type(exc).__name__) from None
        log.info("wechat_oa_call", path=path, status=resp.status_code, ms=clock.ms_since(started))
        if resp.status_code != 200:
            raise OAError(f"HTTP_{resp.status_code}", "unexpected HTTP status", retryable=resp.status_code >= 500
                          or resp.status_code == 429)
        if len(resp.content) > MAX_RESPONSE_BYTES:
            raise OAError("BAD_RESPONSE", "response too large")
        try:
            answer = json.loads(resp.content.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise OAError("BAD_RESPONSE", "response is not JSON") from None
        if not isinstance(answer, dict):
            raise OAError("BAD_RESPONSE", "response is not a JSON object")
        code = answer.get("errcode", 0)
        if code != 0:
            message = str(answer.get("errmsg", ""))[:200]
            log.warning("wechat_oa_error", path=path, errcode=code, errmsg=message)
            raise OAError(code, message, retryable=code not in PERMANENT)
        return answer


def pay_oauth_client() -> OfficialAccountClient:
    """The web-OAuth client of the Official Account whose appid WeChat Pay orders carry (JSAPI openids)."""
    wc = settings.get().wechat
    return OfficialAccountClient(settings.WeChatOASettings(appid=wc.appid, appsecret=wc.appsecret, template_id="",
                                                           base_url=wc.sns_url))


def authorize_url(redirect_uri: str, state: str, account: settings.WeChatOASettings | None = None) -> str:
    """Where a WeChat browser goes for a silent (snsapi_base) code; parameter order as documented.
    `account`: the Official Account asking (default: the one WeChat Pay orders carry, for shoppers)."""
    from urllib.parse import quote

    if account is None:
        wc = settings.get().wechat
        appid, oauth_url = wc.appid, wc.oauth_url
    else:
        appid, oauth_url = account.appid, account.oauth_url
    return (f"{oauth_url}{AUTHORIZE_PATH}?appid={quote(appid, safe='')}"
            f"&redirect_uri={quote(redirect_uri, safe='')}&response_type=code&scope=snsapi_base"
            f"&state={quote(state, safe='')}#wechat_redirect")


def forget_tokens() -> None:
    """Drop cached tokens (tests; a rotated appsecret)."""
    with _lock:
        _tokens.clear()
