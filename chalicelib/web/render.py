"""Jinja2 rendering for every page people see: one layout, autoescaped, strict CSP with a per-page nonce.

jinja2 loads on the first page a container renders, never at `import app` (cold start of API calls);
app.py imports this module for `page_endpoint` only, so everything else here loads inside functions.
"""
from __future__ import annotations

from chalice import Response

from chalicelib import settings
from chalicelib.web import i18n, responses

MWEB_ORIGIN = "https://wx.tenpay.com"   # where WeChat H5 (MWEB) payments open the wallet

_env = None


def env():
    global _env
    if _env is None:
        from pathlib import Path

        import jinja2

        templates = Path(__file__).resolve().parent / "templates"
        _env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates)), autoescape=True,
                                  trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined,
                                  auto_reload=False)
    return _env


def _origin(url: str) -> str | None:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") and parts.netloc else None


def form_targets() -> list[str]:
    """Where our forms (and the redirects they cause) may go: us, the channels' cashiers, the upload bucket."""
    s = settings.get()
    # boto3 presigns uploads for the global virtual-hosted name; the regional one is allowed too.
    buckets = [s.aws_endpoint_url] if s.aws_endpoint_url else [f"https://{s.bucket}.s3.amazonaws.com",
                                                                f"https://{s.bucket}.s3.{s.region}.amazonaws.com"]
    found = [_origin(u) for u in (s.alipay.gateway_url, s.payease.gateway_url, MWEB_ORIGIN, *buckets)]
    return sorted({o for o in found if o and o != _origin(s.public_base_url)})


def headers(nonce: str) -> dict[str, str]:
    csp = (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; img-src 'self' data:; "
           f"connect-src 'self'; form-action 'self' {' '.join(form_targets())}; base-uri 'none'; "
           "frame-ancestors 'none'")
    return responses.secured({"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store",
                              "Content-Security-Policy": csp})


def page(template: str, lang: str, status: int = 200, **context) -> Response:
    import secrets

    nonce = secrets.token_urlsafe(16)
    t = i18n.translator(lang)
    body = env().get_template(template).render(t=t, lang=lang, other_lang="en" if lang == "zh-CN" else "zh-CN",
                                               nonce=nonce, **context)
    return Response(body=body, status_code=status, headers=headers(nonce))


def message(lang: str, title_key: str, text_key: str, status: int, **context) -> Response:
    return page("message.html", lang, status, title_key=title_key, text_key=text_key, **context)


def redirect(location: str, status: int = 303) -> Response:
    return Response(body="", status_code=status, headers=responses.secured({"Location": location,
                                                                             "Cache-Control": "no-store"}))


def page_endpoint(fn):
    """Every page route: an unexpected failure is logged and shown as a plain error page, never a stack."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # the one place a page may fail, always logged
            import traceback

            from chalicelib import log

            log.error("page_error", route=fn.__name__, error=type(exc).__name__, trace=traceback.format_exc(limit=8))
            return message("en", "error_title", "error_text", 500)
    return wrapper
