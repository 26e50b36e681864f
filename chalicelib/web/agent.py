"""Which kind of browser a shopper is in, from the User-Agent (wechat-pay spec §13, alipay spec §9)."""
from __future__ import annotations

import re

WECHAT = "wechat"       # WeChat's in-app browser: JSAPI after web OAuth
ALIPAY = "alipay"       # the Alipay app's browser: Alipay WAP
PHONE = "phone"         # a phone's own browser (camera app scan): H5 / WAP, which open the wallet app
DESKTOP = "desktop"     # a computer: scan the code with a wallet

_PHONE = re.compile(r"Mobile|Android|iPhone|iPad|iPod|HarmonyOS|Windows Phone", re.I)


def classify(user_agent: str | None) -> str:
    ua = (user_agent or "")[:512]
    low = ua.lower()
    if "micromessenger" in low and "wxwork" not in low:  # WeCom cannot pay by JSAPI: treat as a phone
        return WECHAT
    if "alipayclient" in low:
        return ALIPAY
    return PHONE if _PHONE.search(ua) else DESKTOP
