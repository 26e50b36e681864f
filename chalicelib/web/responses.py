"""Every page we serve goes out through here, with the security headers in one place."""
from __future__ import annotations

from chalice import Response

# No referrer (page URLs carry a payment id), no MIME sniffing, never framed, HTTPS remembered for a year.
SECURITY_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
    "Content-Security-Policy": "default-src 'self'; style-src 'unsafe-inline'; form-action *; "
                               "frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
}


def secured(headers: dict[str, str] | None = None) -> dict[str, str]:
    """`headers` plus the security headers (a page may tighten its CSP, never drop frame-ancestors)."""
    out = {**SECURITY_HEADERS, **(headers or {})}
    if "frame-ancestors 'none'" not in out["Content-Security-Policy"]:
        out["Content-Security-Policy"] += "; frame-ancestors 'none'"
    return out


def html(body: str, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body=body, status_code=status,
                    headers=secured({"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store",
                                     **(headers or {})}))


def redirect(location: str, status: int = 303) -> Response:
    return Response(body="", status_code=status, headers=secured({"Location": location, "Cache-Control": "no-store"}))
