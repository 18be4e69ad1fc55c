"""A site that moved: legacy URLs, a blog renamed, www to the bare host, and the tutorial's class-based redirect.

Run it with:  uvicorn examples.redirects:app
then try http://127.0.0.1:8000/blog/hello or http://127.0.0.1:8000/api/batch/class_based/?question=why
"""

from __future__ import annotations

import re

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from starlette_mw import Redirect, RedirectMiddleware


async def post(request: Request) -> Response:
    return PlainTextResponse(f"post {request.path_params['slug']}")


async def redirected_endpoint(request: Request) -> Response:
    return JSONResponse({"q": request.query_params.get("q"), "user": request.query_params.get("user")})


rules = [
    Redirect.host("www.localhost", "localhost"),
    Redirect("/index.html", "/"),
    Redirect("/blog/{slug}", "/posts/{slug}"),
    Redirect("/old-feed.xml", status=410),
    # The class-based redirect of a widely read FastAPI middleware tutorial, as one rule.
    Redirect(
        re.compile(r".*/batch/class_based/"),
        "/redirected_endpoint?q={?question}&user={?user_name=unknown}",
        query="drop",
        methods=["GET"],
    ),
]

app = Starlette(
    routes=[
        Route("/", lambda request: PlainTextResponse("home")),
        Route("/posts/{slug}", post),
        Route("/redirected_endpoint", redirected_endpoint),
    ],
    middleware=[Middleware(RedirectMiddleware, rules=rules, trailing_slash="strip", trailing_slash_if_route=True)],
)
