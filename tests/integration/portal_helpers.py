"""A browser for the portal pages over chalice's test client: keeps cookies, reads form tokens."""
from __future__ import annotations

import re
from urllib.parse import urlencode, urlsplit

from tests.support.jobs import by_hand

PASSWORD = "kiwi fruit 2026"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class Browser:
    def __init__(self, client, agent="Mozilla/5.0 (Linux; Android 11; Tablet) Chrome/120"):
        self.client = client
        self.jar: dict[str, str] = {}
        self.agent = agent
        self.last = None

    def _headers(self, extra=None):
        h = {"User-Agent": self.agent, "Accept-Language": "en"}
        if self.jar:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.jar.items())
        h.update(extra or {})
        return h

    def _keep(self, resp):
        raw = resp.headers.get("Set-Cookie") or resp.headers.get("set-cookie")
        if raw:
            name, _, rest = raw.partition("=")
            value = rest.split(";")[0]
            if "Max-Age=0" in raw:
                self.jar.pop(name, None)
            else:
                self.jar[name] = value
        self.last = resp
        return resp

    def get(self, path):
        return self._keep(self.client.http.get(path, headers=self._headers()))

    def post(self, path, data: dict, csrf: str | None = "page"):
        """A form POST; `csrf="page"` sends the token of the last page seen, None sends none."""
        if csrf == "page":
            csrf = self.csrf()
        body = dict(data)
        if csrf is not None:
            body["csrf"] = csrf
        return self._keep(self.client.http.post(
            path, body=urlencode(body).encode(),
            headers=self._headers({"Content-Type": "application/x-www-form-urlencoded"})))

    def csrf(self) -> str:
        m = _CSRF.search(self.last.body.decode())
        assert m, "the last page has no form"
        return m.group(1)

    def text(self) -> str:
        return self.last.body.decode()

    def sign_in(self, email, password=PASSWORD):
        self.get("/portal/sign-in")
        return self.post("/portal/sign-in", {"email": email, "password": password})

    def accept(self, url, password=PASSWORD):
        path = urlsplit(url).path
        self.get(path)
        assert self.last.status_code == 200, self.last.body
        return self.post(path, {"password": password, "password2": password})


def owner_of(client, merchant_id: str, email="owner@tuihoney.nz") -> Browser:
    """Ops invites the owner; the owner accepts and signs in."""
    invited = by_hand(client, "invite_owner", {"request_id": f"inv-{merchant_id}", "merchant_id": merchant_id,
                                               "email": email})
    assert invited["outcome"] == "ok", invited
    b = Browser(client)
    assert b.accept(invited["invitation_url"]).status_code == 303
    resp = b.sign_in(email)
    assert resp.status_code == 303, resp.body
    return b


def invite(owner: Browser, email: str, role: str) -> str:
    owner.get("/portal/staff")
    resp = owner.post("/portal/staff/invite", {"email": email, "role": role})
    assert resp.status_code == 200, resp.body
    return re.search(r'id="invitation-link" href="([^"]+)"', owner.text()).group(1)


def staff_member(client, owner: Browser, email: str, role: str) -> Browser:
    b = Browser(client)
    b.accept(invite(owner, email, role))
    assert b.sign_in(email).status_code == 303
    return b
