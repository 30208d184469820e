"""A Flask app behind Werkzeug's `ProxyFix`, configured as Flask's proxy docs say."""

from __future__ import annotations

from flask import Flask, jsonify, request, url_for
from werkzeug.middleware.proxy_fix import ProxyFix

app = Flask(__name__)
app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1, x_prefix=1)  # type: ignore[method-assign]


@app.get("/health")
def health() -> str:
    return "ok"


@app.get("/where")
def where():  # noqa: ANN201 - a Flask view
    return jsonify(script_root=request.script_root, remote_addr=request.remote_addr,
                   url=url_for("where", _external=True),
                   prefix_header=request.headers.get("X-Forwarded-Prefix"))
