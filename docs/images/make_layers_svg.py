"""Draws docs/images/layers.svg: a request through the layers of an app, and the package's folders.

    python docs/images/make_layers_svg.py          # writes layers.svg next to this file

tests/test_docs_site.py checks that the committed picture is what this script draws now.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

OUT = Path(__file__).with_name("layers.svg")
WIDTH, HEIGHT = 860, 620

# A request meets these outermost first; the response leaves through them innermost first.
# (label, where it lives, fill colour)
STACK = [
    ("ErrorResponseMiddleware", "_app/errors.py: Starlette's 500 layer, with the edits", "#eceff1"),
    ("CORSMiddleware", "_cors/ (order_role = 'cors')", "#e3f2fd"),
    ("RedirectMiddleware", "_redirects/ (CORS belongs outside it)", "#fff3e0"),
    ("TimingMiddleware", "_timing/", "#e8f5e9"),
    ("@app.middleware('http')", "HTTPMiddleware: _engine/", "#f3e5f5"),
    ("Router, endpoint", "Starlette (and its ExceptionMiddleware)", "#fafafa"),
]

# The package, from its face down: each row imports only rows below it.
FOLDERS = [
    ("__init__.py", "the public face", "testing/", "assertions, plugin fixtures"),
    ("_app/", "decorator, install, error layer, describe", "", ""),
    ("_cors/  _timing/", "one folder per middleware:", "_redirects/", "none imports another"),
    ("_engine/", "call_next's exchange and tasks, PlainMiddleware", "", ""),
    ("_request_record.py", "cooperation in the scope", "_layers.py", "stack walk, order rules"),
    ("_http.py  _paths.py", "HTTP grammar, path filters", "_registration.py", "options, checked early"),
]


def text(x: float, y: float, value: str, **attributes: str) -> str:
    extra = "".join(f' {name.replace("_", "-")}="{escape(v)}"' for name, v in attributes.items())
    return f'<text x="{x:g}" y="{y:g}"{extra}>{escape(value)}</text>'


def stack() -> list[str]:
    parts = [text(20, 28, "A request through the stack", font_size="15", font_weight="bold")]
    top, step, inset, margin, innermost = 44, 50, 16, 8, 50
    bottom = top + (step + margin) * (len(STACK) - 1) + innermost
    for depth, (label, home, fill) in enumerate(STACK):
        x = 40 + depth * inset
        y = top + depth * step
        width = 440 - 2 * depth * inset
        height = bottom - depth * margin - y
        parts.append(f'<rect x="{x}" y="{y}" width="{width}" height="{height}" rx="6" fill="{fill}" stroke="#607d8b"/>')
        parts.append(text(x + 10, y + 18, label, font_weight="bold"))
        parts.append(text(x + 10, y + 34, home, fill="#455a64", font_size="11"))
    # The request goes in on the left, the response comes out on the right.
    parts.append(f'<line x1="26" y1="{top}" x2="26" y2="{bottom - 10}" stroke="#1565c0" stroke-width="2"/>')
    parts.append(f'<path d="M20 {bottom - 18} L26 {bottom - 6} L32 {bottom - 18} Z" fill="#1565c0"/>')
    parts.append(text(20, bottom + 16, "request", fill="#1565c0"))
    parts.append(f'<line x1="494" y1="{bottom - 10}" x2="494" y2="{top + 8}" stroke="#2e7d32" stroke-width="2"/>')
    parts.append(f'<path d="M488 {top + 16} L494 {top + 4} L500 {top + 16} Z" fill="#2e7d32"/>')
    parts.append(text(440, bottom + 16, "response", fill="#2e7d32"))
    # The record in the scope, which the layers share instead of importing one another.
    parts.append(f'<rect x="520" y="{top}" width="320" height="118" rx="6" fill="white" stroke="#6d4c41"')
    parts[-1] += ' stroke-dasharray="5,4"/>'
    lines = [
        ("scope['starlette_mw.request']: RequestRecord", "bold"),
        ("exposed: headers a layer will add (Timing)", "normal"),
        ("cors_origin: the origin CORS allowed", "normal"),
        ("error_edits: each layer's edit of the 500", "normal"),
        ("Whichever layer edits the start last exposes", "normal"),
        ("the headers: the order of the two is free.", "normal"),
    ]
    for index, (line, weight) in enumerate(lines):
        parts.append(text(532, top + 22 + index * 17, line, font_weight=weight, font_size="12"))
    return parts


def folders() -> list[str]:
    top = 230
    parts = [
        text(520, top - 14, "The package: each row imports only rows below it", font_size="13", font_weight="bold")
    ]
    for index, (left, left_note, right, right_note) in enumerate(FOLDERS):
        y = top + index * 62
        boxes = [(left, left_note, 520, 320 if not right else 155), (right, right_note, 685, 155)]
        for name, note, x, width in boxes:
            if not name:
                continue
            parts.append(f'<rect x="{x}" y="{y}" width="{width}" height="46" rx="6" fill="#fffde7" stroke="#9e9d24"/>')
            parts.append(text(x + 8, y + 19, name, font_family="monospace", font_size="12"))
            parts.append(text(x + 8, y + 36, note, fill="#555", font_size="11"))
    return parts


def render() -> str:
    body = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        'font-family="sans-serif" font-size="13">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        *stack(),
        *folders(),
        "</svg>",
    ]
    return "\n".join(body) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
