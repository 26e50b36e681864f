"""The tuition page: an NZD invoice paid in CNY at a locked quote through PayEase, with documents."""
from __future__ import annotations

from chalice import Response

from chalicelib import clock, settings
from chalicelib.domain.fx import Quote
from chalicelib.services import errors
from chalicelib.web import render


def page(p, r, error_key: str | None = None, status: int = 200) -> Response:
    from chalicelib.services import documents
    from chalicelib.web import shopper

    lang = r.lang
    state = shopper.state_of(p)
    quote = Quote.from_dict(p.quote)
    expired = clock.now() >= quote.expires_at
    action = (p.next_action or {}).get("channel_action") or {}
    banks = settings.get().payease.banks
    direct_url = None
    if banks and state == "waiting" and not expired:
        from chalicelib import channels

        direct_url = channels.get("payease").direct_bank_url()
    return render.page(
        "tuition.html", lang, status, **shopper.payment_context(p), state=state, expired=expired,
        cny=quote.cny.to_major_str(), rate=str(quote.rate), quote_id=quote.id,
        expires_at=clock.iso(quote.expires_at), seconds_left=max(0, int((quote.expires_at - clock.now())
                                                                        .total_seconds())),
        valid_until=quote.expires_at.strftime("%H:%M"), pay_url=action.get("url", ""),
        fields=action.get("fields", {}), banks=banks, direct_url=direct_url,
        documents=documents.list_for(p.id) if p.documents else [], requote_url=f"/pay/{p.id}/requote",
        document_url=f"/pay/{p.id}/documents/new", result_url=f"/pay/{p.id}/result?lang={lang}",
        doc_types=sorted(documents.TYPES), error_key=error_key)


def requote(payment_id: str, req) -> Response:
    from chalicelib.services import payments
    from chalicelib.web import shopper

    lang = shopper.Request(req).lang
    if shopper.find_payment(payment_id) is None:
        return render.message(lang, "not_found_title", "payment_not_found", 404)
    try:
        payments.requote(payment_id)
    except errors.ServiceError as exc:
        status = 404 if exc.kind == "not_found" else 409 if exc.kind == "conflict" else 503
        return render.message(lang, "error_title", "error_text", status, back_url=f"/pay/{payment_id}")
    return render.redirect(f"/pay/{payment_id}")


def new_document(payment_id: str, req) -> Response:
    """Step one of an upload without JavaScript: name and type, then a page whose form posts the file to S3."""
    from chalicelib.services import documents
    from chalicelib.web import shopper

    r = shopper.Request(req)
    p = shopper.find_payment(payment_id)
    if p is None or p.quote is None:
        return render.message(r.lang, "not_found_title", "payment_not_found", 404)
    form = r.form()
    back = f"{settings.get().public_base_url}/pay/{p.id}?lang={r.lang}"
    try:
        started = documents.start_upload(p.id, form.get("filename", "").strip(), form.get("content_type"), None,
                                         redirect_to=back)
    except errors.ServiceError:
        return page(p, r, error_key="document_invalid", status=400)
    return render.page("upload.html", r.lang, **shopper.payment_context(p), upload=started["upload"],
                       document=started["document"], back_url=f"/pay/{p.id}?lang={r.lang}")
