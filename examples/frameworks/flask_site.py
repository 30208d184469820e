"""A Flask site as Flask's tutorial writes one: `url_for` links, a login that redirects,
a session and a cookie scoped to the site.

Nothing in it knows it runs under ``/flask``: the gateway tells it (``SCRIPT_NAME``), so
every ``url_for`` and ``redirect`` carries the prefix, as behind nginx with gunicorn and
``SCRIPT_NAME=/flask``.
"""

from __future__ import annotations

from flask import Flask, redirect, render_template_string, request, session, url_for

app = Flask(__name__)
app.secret_key = "examples-only-not-a-secret"

PAGE = """<!doctype html>
<title>{{ title }}</title>
<nav><a href="{{ url_for('index') }}">home</a> <a href="{{ url_for('private') }}">private</a>
{% if user %}<a href="{{ url_for('logout') }}">log out {{ user }}</a>
{% else %}<a href="{{ url_for('login') }}">log in</a>{% endif %}</nav>
<h1>{{ title }}</h1>
{% if form %}<form method="post" action="{{ url_for('login', next=next) }}">
<input name="user" placeholder="name"><button>Log in</button></form>{% endif %}
"""


@app.get("/health")
def health() -> str:
    return "ok"


@app.get("/")
def index():  # noqa: ANN201 - a Flask view
    response = app.make_response(render_template_string(
        PAGE, title="Flask site", user=session.get("user"), form=False))
    # A cookie for this site only: its path is where the site lives, whatever the prefix.
    response.set_cookie("visited", "yes", path=url_for("index"))
    return response


@app.route("/login", methods=["GET", "POST"])
def login():  # noqa: ANN201 - a Flask view
    if request.method == "POST" and request.form.get("user"):
        session["user"] = request.form["user"]
        return redirect(request.args.get("next") or url_for("index"))
    return render_template_string(PAGE, title="Log in", user=None, form=True,
                                  next=request.args.get("next", ""))


@app.get("/logout")
def logout():  # noqa: ANN201 - a Flask view
    session.clear()
    return redirect(url_for("index"))


@app.get("/private")
def private():  # noqa: ANN201 - a Flask view
    if "user" not in session:
        return redirect(url_for("login", next=url_for("private")))
    return render_template_string(PAGE, title=f"Hello {session['user']}",
                                  user=session["user"], form=False)
