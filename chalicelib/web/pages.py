"""Hosted shopper pages, rendered as small self-contained HTML. Every value is escaped."""
from __future__ import annotations

from html import escape

_STYLE = """body{font-family:system-ui,-apple-system,'PingFang SC','Microsoft YaHei',sans-serif;max-width:28rem;
margin:2rem auto;padding:0 1rem;color:#1b1b1b}h1{font-size:1.3rem}.amount{font-size:2rem;font-weight:600}
.muted{color:#666;font-size:.9rem}button{font-size:1.1rem;padding:.7rem 1.4rem;border:0;border-radius:.4rem;
background:#1a7f37;color:#fff}.warn{background:#fff4e5;padding:.8rem;border-radius:.4rem}"""


def page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" "
            f"content=\"width=device-width,initial-scale=1\"><title>{escape(title)}</title><style>{_STYLE}</style>"
            f"</head><body>{body}</body></html>")


def message(title: str, text: str) -> str:
    return page(title, f"<h1>{escape(title)}</h1><p>{escape(text)}</p>")


def quoted_payment(view: dict, expired: bool, requote_url: str, upload_url: str) -> str:
    """The payer's page for a CNY-charged invoice: amounts, rate, expiry, then pay or re-quote."""
    quote = view["quote"]
    cny = f"{int(quote['cny_amount']) // 100}.{int(quote['cny_amount']) % 100:02d}"
    nzd = f"{view['amount'] // 100}.{view['amount'] % 100:02d}"
    head = (f"<h1>{escape(view['description'])}</h1>"
            f"<p class=\"muted\">Reference {escape(view['merchant_reference'])}</p>"
            f"<p>Invoice: {escape(view['currency'])} {escape(nzd)}</p>"
            f"<p class=\"amount\">¥ {escape(cny)} CNY</p>"
            f"<p class=\"muted\">Rate {escape(quote['rate'])} CNY per {escape(view['currency'])} "
            f"(quote {escape(quote['id'])}, valid until {escape(quote['expires_at'])})</p>")
    if view["status"] != "pending":
        return page("Payment", head + f"<p>This payment is {escape(view['status'])}.</p>")
    if expired:
        return page("Quote expired", head + (
            "<p class=\"warn\">This exchange-rate quote has expired. Get a fresh quote to pay.</p>"
            f"<form method=\"post\" action=\"{escape(requote_url)}\"><button type=\"submit\">Get a fresh quote"
            "</button></form>"))
    action = view["next_action"]["channel_action"]
    fields = "".join(f"<input type=\"hidden\" name=\"{escape(k)}\" value=\"{escape(str(v))}\">"
                     for k, v in action.get("fields", {}).items())
    docs = "".join(f"<li>{escape(d['filename'])}</li>" for d in view.get("documents", []))
    return page("Pay by online banking", head + (
        f"<form method=\"post\" action=\"{escape(action['url'])}\" accept-charset=\"GBK\">{fields}"
        "<button type=\"submit\">Pay with online banking</button></form>"
        f"<h2>Supporting documents</h2><ul>{docs}</ul>"
        f"<p class=\"muted\">Upload PDF, JPEG or PNG (max 10 MB) via <code>POST {escape(upload_url)}</code>.</p>"))
