"""Kauri: every entry point and nothing else. Handlers read the request, call one service, answer."""
from __future__ import annotations

from chalice import Chalice

from chalicelib import channels, settings

app = Chalice(app_name="kauri")
app.api.binary_types = list(app.api.binary_types) + ["image/svg+xml"]

_settings = settings.get()

# ---- sandbox channel simulators (never in prod) ----------------------------------------------
if _settings.sandbox_enabled and not _settings.is_prod:
    for _name in channels.names():
        app.register_blueprint(channels.sandbox_blueprint(_name), url_prefix=f"/sandbox/{_name}")
