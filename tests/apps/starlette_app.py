"""A Starlette app as Starlette's docs write one: named routes, url_for, redirects, a cookie."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse
from starlette.routing import Route


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def home(request: Request) -> JSONResponse:
    response = JSONResponse({
        "hello": str(request.url_for("hello", name="ann")),
        "hello_path": str(request.app.url_path_for("hello", name="ann").make_absolute_url(
            request.base_url)),
        "root_path": request.scope.get("root_path", ""),
    })
    # Scoped to where the app lives, as Starlette's own SessionMiddleware docs suggest.
    response.set_cookie("seen", "1", path=request.scope.get("root_path") or "/")
    return response


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"hello {request.path_params['name']}")


async def go_home(request: Request) -> RedirectResponse:
    return RedirectResponse(request.url_for("home"), status_code=303)


app = Starlette(routes=[
    Route("/health", health),
    Route("/", home, name="home"),
    Route("/hello/{name}", hello, name="hello"),
    Route("/go", go_home),
])
