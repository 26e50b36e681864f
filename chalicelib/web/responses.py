"""Every page we serve goes out through here, with the security headers in one place."""
from __future__ import annotations

# No referrer (page URLs carry a payment id), no MIME sniffing, never framed, HTTPS remembered for a year.
SECURITY_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
    # the default for answers that render nothing of their own (redirects); pages set a nonce-based one
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'; base-uri 'none'",
}


def secured(headers: dict[str, str] | None = None) -> dict[str, str]:
    """`headers` plus the security headers (a page may tighten its CSP, never drop frame-ancestors)."""
    out = {**SECURITY_HEADERS, **(headers or {})}
    if "frame-ancestors 'none'" not in out["Content-Security-Policy"]:
        out["Content-Security-Policy"] += "; frame-ancestors 'none'"
    return out

