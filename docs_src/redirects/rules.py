from __future__ import annotations

import re

from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from starlette_mw import App, Redirect, RedirectMiddleware

rules = [
    Redirect.scheme("https"),  # http to https (port=8443 for another port)
    Redirect.host("www.example.com", "example.com"),  # path and query kept
    Redirect("/old", "/new"),  # exact path: a dictionary look-up
    Redirect("/blog/{slug}", "/posts/{slug}"),  # Starlette path syntax and convertors
    Redirect("/docs/{rest:path}", "/manual/{rest}", status=302),
    Redirect(re.compile(r"/u/(?P<id>\d+)"), "/users/{id}"),  # a regex matching the whole path
    Redirect("/old-feed.xml", status=410),  # Gone
    Redirect("/{page}", "/archive/{page}", if_not_found=True),  # only where the app answers 404
    # FastAPI tutorial's class-based redirect: query parameters in the target
    Redirect(
        re.compile(r".*/batch/class_based/"),
        "/redirected_endpoint?q={?question}&user={?user_name=unknown}",
        query="drop",
        methods=["GET"],
    ),
]
middleware = [Middleware(RedirectMiddleware, rules=rules, hosts=["example.com"], trailing_slash="strip")]


async def page(request: Request) -> Response:
    return PlainTextResponse(request.url.path)


app = App(
    routes=[
        Route("/new", page),
        Route("/about", page),
        Route("/posts/{slug}", page),
        Route("/archive/{page}", page),
    ],
    middleware=middleware,
)
