"""`Redirect`, the rule value object, and what a rule becomes once checked: a matcher and a target."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, TypeAlias
from urllib.parse import quote, quote_from_bytes, unquote, urlsplit

from starlette.routing import compile_path

from starlette_mw._http import ascii_spelling

Status: TypeAlias = "int | Literal['permanent', 'temporary']"
QueryMode: TypeAlias = "Literal['keep', 'drop', 'merge']"
Kind: TypeAlias = "Literal['path', 'host', 'scheme']"

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
GONE = 410
# (status for GET and HEAD, status for other methods): 301 and 302 let clients turn a POST into a
# GET (RFC 9110 section 15.4.2), 308 and 307 keep the method and body.
NAMED_STATUSES: dict[str, tuple[int, int]] = {"permanent": (301, 308), "temporary": (302, 307)}
QUERY_MODES = ("keep", "drop", "merge")

# A placeholder of a target: `{name}` or `{1}` (a captured group), `{?name}` or `{?name=default}`
# (a query parameter of the request).
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_GROUP_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+")
# What may stand in a target as written: printable ASCII other than space, '#', '{', '}', '\'.
_LITERAL = re.compile(r"[!-~]*")
# Safe characters of a path segment (RFC 3986 pchar, plus '/') and of a query component.
PATH_SAFE = "/:@!$&'()*+,;="
# Query bytes as sent, made safe for a header: anything outside these is percent-encoded.
QUERY_SAFE = "%&=+/?:@!$'()*,;-._~"
LONE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
# A host name or an IP address, with an optional port (RFC 3986 section 3.2.2), lowercase.
HOST = re.compile(
    r"(?P<name>(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?|\[[0-9a-f:.]+\])"
    r"(?::(?P<port>[0-9]{1,5}))?"
)


@dataclass(frozen=True)
class Redirect:
    """One redirect rule. In `RedirectMiddleware(rules=[...])` the first rule that matches wins.

        Redirect("/old", "/new")                                  # an exact path
        Redirect("/blog/{slug}", "/posts/{slug}")                 # Starlette path syntax
        Redirect("/docs/{rest:path}", "/manual/{rest}", status=302)
        Redirect(re.compile(r"/u/(?P<id>\\d+)"), "/users/{id}")    # a regex, matching the whole path
        Redirect("/search", "/find?q={?term}", query="drop")      # a query parameter of the request
        Redirect("/retired", status=410)                          # 410 Gone
        Redirect("/maybe", "/elsewhere", if_not_found=True)       # only where the app answers 404
        Redirect.host("www.example.com", "example.com")           # path and query kept
        Redirect.scheme("https", port=8443)                       # http to https

    A source matches what `Route(source)` receives: the whole path, or all of it but a final
    newline, which the route's `$` lets through (a regex alike).

    A target is a path (`/new`, sent as a relative Location) or an absolute http(s) URL, which then
    names the only host it may send clients to. `{name}` / `{1}` put a captured value into the
    target, `{?name}` a query parameter of the request (without `=default`, a request lacking it
    does not match); captured values are percent-encoded, query parameters kept as sent. `query`:
    "keep" (the request's query string follows the target's own), "drop", or "merge" (the target's
    parameters replace the request's of the same name). `status`: 301, 302, 303, 307, 308,
    "permanent" (301 for GET and HEAD, 308 otherwise), "temporary" (302 / 307), or None for the
    middleware's default. `methods` limits the rule to some methods (GET brings HEAD). Rules are
    checked when the middleware is built.
    """

    source: str | re.Pattern[str]
    target: str | None = None
    status: Status | None = field(default=None, kw_only=True)
    query: QueryMode = field(default="keep", kw_only=True)
    methods: Iterable[str] | None = field(default=None, kw_only=True)
    if_not_found: bool = field(default=False, kw_only=True)
    kind: Kind = field(default="path", kw_only=True)
    port: int | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        # Stored as a frozenset so that rules compare and hash by value, whatever was passed.
        # Anything else is left as written, for the middleware to refuse with the rule's index.
        if isinstance(self.methods, Iterable) and not isinstance(self.methods, str | frozenset):
            try:
                object.__setattr__(self, "methods", frozenset(self.methods))
            except TypeError:  # unhashable names
                object.__setattr__(self, "methods", tuple(self.methods))

    @classmethod
    def host(cls, source: str, target: str, *, status: Status | None = None) -> Redirect:
        """Requests for host `source` go to host `target` (which may carry a port), path and query kept."""
        return cls(source, target, status=status, kind="host")

    @classmethod
    def scheme(cls, target: str = "https", *, port: int | None = None, status: Status | None = None) -> Redirect:
        """Requests on the other scheme go to `target` ("https" or "http") on the same host, or on `port`."""
        return cls("http" if target == "https" else "https", target, status=status, kind="scheme", port=port)


class Part(NamedTuple):
    """A piece of a target: text, then the placeholder after it ("" as `kind` for the text at the end)."""

    literal: str
    kind: str  # "group" or "param"
    name: str
    in_query: bool  # whether it is in the target's query part
    default: str | None  # the placeholder's default


class Template:
    """A checked target: literal text and placeholders, rendered with values percent-encoded."""

    __slots__ = ("groups", "origin", "params", "parts")

    def __init__(self, target: str, where: str) -> None:
        if "#" in target:
            raise ValueError(
                f"{where}: target {target!r} has a '#'; a fragment is left to the client, so drop it from the target."
            )
        pieces: list[tuple[str, str, str, str | None]] = []
        end = 0
        for match in _PLACEHOLDER.finditer(target):
            pieces.append((target[end : match.start()], *_placeholder(match.group(1), target, where)))
            end = match.end()
        tail = target[end:]
        for literal in [piece[0] for piece in pieces] + [tail]:
            if "{" in literal or "}" in literal or "\\" in literal or not _LITERAL.fullmatch(literal):
                raise ValueError(
                    f"{where}: target {target!r} holds a stray brace, a backslash, a space or a character outside "
                    "printable ASCII; write placeholders as {name} or {?param} and percent-encode the rest."
                )
        self.origin = ""
        if not target.startswith("/"):
            url = urlsplit(target.split("{", 1)[0])
            host = HOST.fullmatch(url.netloc)
            if url.scheme not in ("http", "https") or host is None or not url.path:
                raise ValueError(
                    f"{where}: target {target!r} is neither a path starting with '/' nor an absolute http(s) URL "
                    "with a lowercase host and a path; use '/new' or 'https://example.com/new'."
                )
            if not valid_port(host["port"]):
                raise ValueError(
                    f"{where}: target {target!r} has port {host['port']!r}; use a port from 1 to 65535, "
                    "no leading zero."
                )
            self.origin = f"{url.scheme}://{url.netloc}"
        elif target.startswith(("//", "/\\")):
            raise ValueError(
                f"{where}: target {target!r} starts with '//', which clients read as another host; "
                "use one '/' for a path, or an absolute URL such as 'https://example.com/'."
            )
        _check_dot_segments(target, self.origin, where)
        # The part decides the encoding, and each `{?name=...}` keeps its own default.
        self.parts: list[Part] = []
        self.groups: set[str] = set()
        # Each parameter, and its default; None if any of its placeholders has none (it is required).
        self.params: dict[str, str | None] = {}
        in_query = False
        for literal, kind, name, default in pieces:
            in_query = in_query or "?" in literal
            self.parts.append(Part(literal=literal, kind=kind, name=name, in_query=in_query, default=default))
            if kind == "group":
                self.groups.add(name)
            else:
                self.params[name] = default if self.params.get(name, default) is not None else None
        self.parts.append(Part(literal=tail, kind="", name="", in_query=in_query, default=None))

    def render(
        self,
        groups: Mapping[str, str],
        query: Mapping[str, str],
        *,
        sample: bool = False,
        raw: Mapping[str, str] | None = None,
    ) -> str | None:
        """The target with values filled in, or None when a query parameter without a default is missing.

        `query` holds the request's parameters as sent (`query_params`), whose escapes are kept.
        `sample=True` (the loop check) fills a missing parameter with a sample value instead. `raw`
        holds groups already percent-encoded as the client sent them, used in the path part.
        """
        out: list[str] = []
        for literal, kind, name, in_query, default in self.parts:
            out.append(literal)
            if kind == "group":
                if raw is not None and name in raw and not in_query:
                    out.append(raw[name])
                    continue
                value = groups.get(name) or ""
            elif kind == "param":
                sent = query.get(name)
                if sent is not None:
                    out.append(safe_query(sent) if in_query else _as_path(sent))
                    continue
                if default is None:
                    if not sample:
                        return None
                    default = "x"
                value = default
            else:
                continue
            out.append(quote(value, safe="" if in_query else PATH_SAFE))
        return "".join(out)


def query_parts(query_string: bytes) -> list[tuple[str, str]]:
    """(name, the part as sent) for each non-empty `&`-separated part of a query string.

    The name is read as Starlette's `request.query_params` reads it (`parse_qsl`: up to the first
    '=', '+' a space, escapes UTF-8); the part is the bytes as sent, in a latin-1 str.
    """
    text = query_string.decode("latin-1")
    return [(unquote(part.partition("=")[0].replace("+", " ")), part) for part in text.split("&") if part]


def query_params(query_string: bytes) -> dict[str, str]:
    """Each parameter's value as sent, escapes kept; the last of a repeated name wins, as in Starlette."""
    return {name: part.partition("=")[2] for name, part in query_parts(query_string)}


def safe_query(sent: str) -> str:
    """Query text as sent, escapes kept, with what a header cannot hold (controls, spaces,
    non-ASCII) percent-encoded."""
    return quote_from_bytes(sent.encode("latin-1"), safe=QUERY_SAFE)


def _as_path(sent: str) -> str:
    """A query value as sent, for a path: '+' is a space there, and '?' and a lone '%' are encoded."""
    return LONE_PERCENT.sub("%25", quote_from_bytes(sent.replace("+", " ").encode("latin-1"), safe=PATH_SAFE + "%"))


def _check_dot_segments(target: str, origin: str, where: str) -> None:
    """Refuse '.' and '..' segments (also as '%2e'): clients resolve them before they follow the
    Location, so the loop check, which follows the Location as written, would miss loops."""
    query = re.search(r"\?(?![^{}]*\})", target)  # the first '?' outside a placeholder
    end = query.start() if query is not None else len(target)
    path = target[len(origin) : end]
    segments = _PLACEHOLDER.sub("\0", path).split("/")
    if not any(segment.lower().replace("%2e", ".") in (".", "..") for segment in segments):
        return
    resolved: list[str] = []
    parts = path.split("/")[1:]
    for number, segment in enumerate(parts):
        dots = segment.lower().replace("%2e", ".")
        if dots == ".." and resolved:
            resolved.pop()
        if dots in (".", ".."):
            if number == len(parts) - 1:
                resolved.append("")
        else:
            resolved.append(segment)
    fixed = origin + "/" + "/".join(resolved) + target[end:]
    raise ValueError(
        f"{where}: target {target!r} has a '.' or '..' segment, which clients resolve before they follow it; "
        f"write the resolved target, {fixed!r}."
    )


def _placeholder(inside: str, target: str, where: str) -> tuple[str, str, str | None]:
    """(kind, name, default) of the text inside one pair of braces."""
    if inside.startswith("?"):
        name, equals, default = inside[1:].partition("=")
        if name and _LITERAL.fullmatch(name) and "&" not in name and "=" not in name:
            return "param", name, default if equals else None
    elif _GROUP_NAME.fullmatch(inside):
        return "group", inside, None
    raise ValueError(
        f"{where}: target {target!r} has the placeholder {{{inside}}}; use {{name}} or {{1}} for a captured "
        "group, {?name} or {?name=default} for a query parameter."
    )


def compile_source(source: object, where: str) -> tuple[str | None, re.Pattern[str] | None, frozenset[str]]:
    """(exact path or None, regex or None, the group names the source defines)."""
    if isinstance(source, re.Pattern):
        if not isinstance(source.pattern, str):
            raise TypeError(f"{where}: source {source!r} is a bytes regular expression; compile a str pattern.")
        numbers = {str(number) for number in range(1, source.groups + 1)}
        return None, source, frozenset(source.groupindex) | numbers
    if not isinstance(source, str):
        raise TypeError(
            f"{where}: source {source!r} has type {type(source).__name__}; use a path such as '/old', "
            "a Starlette path such as '/blog/{slug}', or a compiled regular expression."
        )
    if not source.startswith("/"):
        raise ValueError(f"{where}: source {source!r} must start with '/', as in '/{source.lstrip('/')}'.")
    if "{" not in source:
        return source, None, frozenset()
    try:
        regex, _, convertors = compile_path(source)
    except (AssertionError, KeyError, ValueError) as exc:  # Starlette asserts on an unknown convertor
        raise ValueError(
            f"{where}: source {source!r} is not a valid Starlette path ({exc}); name each parameter once "
            "and use a known convertor, as in '/users/{id:int}'."
        ) from None
    # Without '^...$': a rule matches through paths.route_fullmatch, as the route does (its '$'
    # lets a final newline through, so '/old' is also '/old%0A').
    body = regex.pattern.removeprefix("^").removesuffix("$")
    return None, re.compile(body), frozenset(convertors)


def valid_port(port: str | None) -> bool:
    """Whether a URL's port (None: none given) is one a client sends: 1 to 65535, no leading zero."""
    return port is None or (port[:1] != "0" and 0 < int(port) < 65536)


def check_host(value: object, where: str) -> str:
    found = HOST.fullmatch(value.lower()) if isinstance(value, str) else None
    if found is None:
        hint = "use a name such as 'example.com' (a port is allowed in a target: 'example.com:8443')"
        if isinstance(value, str) and not value.isascii():
            hint = "clients send a name with letters beyond ASCII in its IDNA (punycode) form"
            spelled = ascii_spelling(value.lower())
            if spelled is not None and HOST.fullmatch(spelled):
                hint += f", so write {spelled!r}"
        raise ValueError(f"{where}: {value!r} is not a host name; {hint}.")
    if not valid_port(found["port"]):
        raise ValueError(f"{where}: {value!r} has port {found['port']!r}; use a port from 1 to 65535, no leading zero.")
    return found.group()


def check_status(status: object, where: str, *, gone_allowed: bool) -> tuple[int, int]:
    """(status for GET and HEAD, status for other methods)."""
    if isinstance(status, str) and status in NAMED_STATUSES:
        return NAMED_STATUSES[status]
    if isinstance(status, int) and not isinstance(status, bool):
        if status in REDIRECT_STATUSES or (gone_allowed and status == GONE):
            return status, status
    allowed = "301, 302, 303, 307, 308, 'permanent' or 'temporary'" + (
        ", or 410 without a target" if gone_allowed else ""
    )
    raise ValueError(f"{where}: status {status!r} is not a redirect status; use {allowed}.")


_KEYS = ("source", "regex", "target", "status", "query", "methods", "if_not_found", "kind", "port")


def redirect_from_dict(data: object, where: str) -> Redirect:
    """A `Redirect` from a dict of its options; `regex` in place of `source` gives a regular expression."""
    if not isinstance(data, Mapping):
        raise TypeError(
            f"{where}: {data!r} is a {type(data).__name__}, not a table of options such as "
            "{'source': '/old', 'target': '/new'}."
        )
    for key in data:
        if key not in _KEYS:
            raise ValueError(f"{where}: key {key!r} is not a Redirect option; use {', '.join(_KEYS)}.")
    options = dict(data)
    if ("source" in options) == ("regex" in options):
        raise ValueError(f"{where}: give exactly one of the keys 'source' (a path) and 'regex' (a regular expression).")
    if "regex" in options:
        pattern = options.pop("regex")
        if not isinstance(pattern, str):
            raise TypeError(f"{where}: key 'regex' holds {pattern!r}; use a string.")
        try:
            options["source"] = re.compile(pattern)
        except re.error as error:
            raise ValueError(
                f"{where}: key 'regex' holds {pattern!r}, which is not a regular expression ({error})."
            ) from None
    source, target = options.pop("source"), options.pop("target", None)
    if "methods" in options and isinstance(options["methods"], str):
        options["methods"] = [options["methods"]]
    return Redirect(source, target, **options)
