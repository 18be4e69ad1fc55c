"""`RedirectMiddleware`: paths, patterns, hosts, schemes and trailing slashes in one rule list.

Built so that no rule set can send a client off the site: issue 5 lists the faults of its peers
(open redirects through '//evil.example' and its encodings, Location from the Host header,
loops behind TLS proxies, lost query strings, 301 turning a POST into a GET).
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal
from urllib.parse import unquote

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from starlette_mw._engine.plain import PlainMiddleware
from starlette_mw._layers import OrderRule
from starlette_mw._paths import PathPatterns
from starlette_mw._redirects.loops import check_loops
from starlette_mw._redirects.rules import Redirect, Status, redirect_from_dict
from starlette_mw._redirects.table import Decision, RuleTable
from starlette_mw._redirects.urls import repeats
from starlette_mw._starlette_routing import route_path

__all__ = ["Redirect", "RedirectMiddleware", "load_redirects"]


class RedirectMiddleware(PlainMiddleware):
    """Answers requests that a rule matches with a redirect (or 410 Gone); the first matching rule wins.

        app.add_middleware(
            RedirectMiddleware,
            rules=[
                Redirect.scheme("https"),
                Redirect.host("www.example.com", "example.com"),
                Redirect("/old", "/new"),
                Redirect("/blog/{slug}", "/posts/{slug}"),
            ],
            hosts=["example.com"],
            trailing_slash="strip",
        )

    - `rules`: `Redirect` objects, or what `load_redirects()` returns.
    - `status`: the default status, "permanent" (301 for GET and HEAD, 308 otherwise, so a POST
      keeps its body), "temporary" (302 / 307), or 301, 302, 303, 307, 308.
    - `trailing_slash`: "strip" or "append" redirects paths no rule matched to the other form;
      `trailing_slash_if_route=True` only when the app's routes match the new path and not the old.
    - `hosts`: the host names (no port) the site answers to; a scheme rule redirects only requests for these.

    A Location is a path on the same host unless a rule names a host; the scheme is the ASGI
    scope's (so proxy headers count only where the server trusts them). A request that a rule
    cannot redirect safely, or only to its own URL, goes on to the app unchanged. Rule sets that redirect in a loop are
    refused when the middleware is built (the documentation's Redirects page says what is checked).

    Put a CORS middleware outside this one: a browser follows a redirect of a cross-origin
    `fetch()` only if the redirect carries the CORS headers. Built with one inside it, it logs a
    warning that says so.
    """

    # Fetch runs the CORS check on each response of a cross-origin request, redirects included,
    # before it follows one (https://fetch.spec.whatwg.org/#http-fetch); a preflight must not be
    # redirected at all.
    order_rules = (
        OrderRule(
            outside="cors",
            otherwise=(
                "its redirects go out without CORS headers and browsers refuse them to cross-origin fetch() calls"
            ),
        ),
    )

    def __init__(
        self,
        app: ASGIApp,
        *,
        rules: Sequence[Redirect] = (),
        status: Status = "permanent",
        trailing_slash: Literal["strip", "append"] | None = None,
        trailing_slash_if_route: bool = False,
        hosts: Sequence[str] = (),
        include: PathPatterns = None,
        exclude: PathPatterns = None,
    ) -> None:
        super().__init__(app, include=include, exclude=exclude)
        if isinstance(rules, str | bytes | Mapping) or not isinstance(rules, Sequence):
            raise TypeError(f"rules={rules!r} is not a list of Redirect rules; use rules=[Redirect('/old', '/new')].")
        if trailing_slash not in (None, "strip", "append"):
            raise ValueError(f"trailing_slash={trailing_slash!r} must be 'strip', 'append' or None (the default).")
        if trailing_slash_if_route and trailing_slash is None:
            raise ValueError("trailing_slash_if_route=True needs trailing_slash='strip' or 'append'.")
        if isinstance(hosts, str) or not isinstance(hosts, Sequence):
            raise TypeError(f"hosts={hosts!r} is not a list of host names; use hosts=['example.com'].")
        self.rules = tuple(rules)
        self.trailing_slash_if_route = trailing_slash_if_route
        self._table = RuleTable(self.rules, status=status, trailing_slash=trailing_slash, hosts=hosts)
        check_loops(self._table)

    async def __call__(self, scope: Scope, receive: Receive, send: Send, checked: bool = False) -> None:
        if not (checked or self.direct) or scope["type"] != "http":
            return await self.pass_on(scope, receive, send)
        table = self._table
        path: str = scope["path"]
        if not path.startswith("/"):
            # `OPTIONS *` (and a server that passes other targets on): no rule is about it, and
            # joined to a host it would name another site.
            await self.app(scope, receive, send)
            return
        # The path the routes see, keeping the prefix: a relative Location goes back under the mount.
        routed = route_path(scope)
        if not table.may_answer(routed or "/"):
            await self.app(scope, receive, send)
            return
        root_path: str = scope["root_path"] if len(routed) < len(path) else ""
        path = routed or "/"
        host = _host(scope) if table.has_origin_rules else None
        decision = table.decide(
            method=scope["method"],
            scheme=scope.get("scheme", "http"),
            host=host,
            path=path,
            root_path=root_path,
            query_string=scope["query_string"],
            raw_path=scope.get("raw_path"),
        )
        if (
            decision is None
            or (decision.check_route and self.trailing_slash_if_route and not _routed(scope, decision))
            or _repeats(scope, decision, host)
        ):
            await self.app(scope, receive, send)
        elif decision.if_not_found:
            await self._unless_found(scope, receive, send, decision)
        else:
            await _respond(send, decision)

    async def _unless_found(self, scope: Scope, receive: Receive, send: Send, decision: Decision) -> None:
        # Only the start message is looked at; the 404's body is dropped as it comes, never held.
        not_found = False

        async def send_unless_404(message: Message) -> None:
            nonlocal not_found
            if message["type"] == "http.response.start" and message["status"] == 404:
                not_found = True
            elif not not_found:
                await send(message)

        await self.app(scope, receive, send_unless_404)
        if not_found:
            await _respond(send, decision)


def _host(scope: Scope) -> str | None:
    """The request's one Host header; None if it has none or several."""
    found = [value for name, value in scope["headers"] if name == b"host"]
    return found[0].decode("latin-1") if len(found) == 1 else None


def _repeats(scope: Scope, decision: Decision, host: str | None) -> bool:
    """Whether the redirect would send the client back to this very request (issue 15): then it is
    no redirect, and the request goes on to the app."""
    location = decision.location
    if location is None:
        return False
    if host is None and not location.startswith("/"):
        host = _host(scope)
    return repeats(
        location,
        decision.status,
        method=scope["method"],
        scheme=scope.get("scheme", "http"),
        host=host,
        path=scope["path"],
        raw_path=scope.get("raw_path"),
        query_string=scope["query_string"],
    )


def _routed(scope: Scope, decision: Decision) -> bool:
    """Whether the app's routes match the new path and not the old (Starlette sets scope["app"])."""
    routes = getattr(scope.get("app"), "routes", None)
    if not routes or decision.location is None:
        return False
    new_path = decision.location.partition("?")[0]

    def exists(path: str) -> bool:
        probe = {**scope, "path": path}
        return any(route.matches(probe)[0] is not Match.NONE for route in routes)

    return not exists(scope["path"]) and exists(unquote(new_path))


async def _respond(send: Send, decision: Decision) -> None:
    headers = [(b"content-length", b"0")]
    if decision.location is not None:
        headers.append((b"location", decision.location.encode("ascii")))
    await send({"type": "http.response.start", "status": decision.status, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def load_redirects(source: str | os.PathLike[str] | Sequence[Mapping[str, object]]) -> list[Redirect]:
    """Rules from a list of dicts, or from a TOML or JSON file, for sites with many legacy URLs.

        rules = load_redirects("redirects.toml")

    In TOML, each rule is a `[[redirects]]` table; in JSON, the file is a list of objects (or an
    object with a "redirects" list). The keys are `Redirect`'s options, with `regex` in place of
    `source` for a regular expression: `{"source": "/old", "target": "/new", "status": 302}`.
    """
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        where = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(
                f"{where}: not UTF-8 text (byte {error.object[error.start]:#04x} at offset {error.start}); "
                "save the file as UTF-8."
            ) from None
        try:
            if path.suffix == ".toml":
                data: object = tomllib.loads(text)
            elif path.suffix == ".json":
                data = json.loads(text)
            else:
                raise ValueError(f"{where}: the file name ends in neither .toml nor .json; rename it to say which.")
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{where}: not valid {path.suffix[1:].upper()} ({error}).") from None
        if isinstance(data, dict):
            data = data.get("redirects")
        if not isinstance(data, list):
            raise ValueError(f"{where}: expected a list of rules under the key 'redirects' ([[redirects]] in TOML).")
    else:
        where = "load_redirects()"
        data = source
        if isinstance(data, str | bytes | Mapping) or not isinstance(data, Sequence):
            raise TypeError(f"load_redirects({source!r}): pass a file path or a list of dicts.")
    rules = [redirect_from_dict(entry, f"{where}: rule {index}") for index, entry in enumerate(data)]
    try:  # each rule's own checks, and the loop check, now, so that the error names the file
        _check_loaded(rules)
    except (TypeError, ValueError) as error:
        raise type(error)(f"{where}: {error}") from None
    return rules


def _check_loaded(rules: list[Redirect]) -> None:
    """The middleware's checks, without its options: each rule, then loops under any default status.

    A rule without a status takes the middleware's, which decides whether a POST stays a POST
    (307 / 308, and "permanent" / "temporary" for it), turns into a GET after a 301 or 302, or
    every method does after a 303; a loop counts only if it happens under all three. The site's
    own host is taken to be 'localhost' and there is no trailing-slash policy: the middleware
    checks again with its real options.
    """
    error: ValueError | None = None
    for status in ("permanent", 301, 303):
        table = RuleTable(rules, status=status, trailing_slash=None, hosts=["localhost"])
        try:
            check_loops(table)
        except ValueError as found:
            error = error or found
        else:
            return
    if error is not None:
        raise error
