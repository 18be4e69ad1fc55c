"""The documentation site: `mkdocs build --strict` builds it, and Chromium opens every page of it
from a local server, with no broken internal link, no missing image and nothing fetched from
another origin (the site must work offline)."""

from __future__ import annotations

import filecmp
import functools
import importlib.util
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import starlette_mw

if TYPE_CHECKING:
    from browser import Browser

ROOT = Path(__file__).parent.parent
DOCS = ROOT / "docs"


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # the test reports what matters; a line per request would bury it


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site as `mkdocs build --strict` writes it: any warning (a broken link, a missing snippet) fails."""
    out = tmp_path_factory.mktemp("site")
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=None,
    )
    assert build.returncode == 0, f"mkdocs build --strict failed:\n{build.stderr}"
    return out


@pytest.fixture(scope="module")
def site_url(site: Path) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, name="docs-site", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def pages(site: Path) -> list[str]:
    """Each page's path in the site: "" for the home page, "cors/" for docs/cors.md."""
    return sorted(
        "".join(f"{part}/" for part in path.parent.relative_to(site).parts)
        for path in site.rglob("index.html")
        if "assets" not in path.parts
    )


def test_every_docs_page_is_in_the_site(site: Path) -> None:
    built = set(pages(site))
    written = {("" if page.stem == "index" else page.stem + "/") for page in DOCS.glob("*.md")}
    assert built == written


def test_every_public_name_has_an_api_reference_entry() -> None:
    reference = (DOCS / "reference.md").read_text()
    documented = set(re.findall(r"^::: starlette_mw\.(\w+)$", reference, re.M))
    assert documented == set(starlette_mw.__all__)


def test_the_layers_picture_is_what_its_script_draws() -> None:
    # docs/images/make_layers_svg.py draws the picture of how-it-is-built.md; rerun it after a change.
    spec = importlib.util.spec_from_file_location("make_layers_svg", DOCS / "images" / "make_layers_svg.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert (DOCS / "images" / "layers.svg").read_text() == script.render()


def test_the_docs_plot_is_the_benchmarks_plot() -> None:
    assert filecmp.cmp(DOCS / "images" / "end_to_end.svg", ROOT / "benchmarks" / "end_to_end.svg", shallow=False)


# Run in each page: what it shows, every link to the site answered, every image drawn, and every
# resource the page loaded from the site's own origin.
CHECK_PAGE = """
const links = [...document.querySelectorAll("article a[href], nav a[href]")].map((a) => new URL(a.href));
const internal = [...new Set(links.filter((url) => url.origin === location.origin).map((url) => url.href))];
const broken = [];
for (const href of internal) {
  const url = new URL(href);
  const response = await fetch(url.origin + url.pathname);
  if (!response.ok) { broken.push(`${href}: ${response.status}`); continue; }
  if (url.hash && url.hash !== "#") {
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    if (!page.getElementById(decodeURIComponent(url.hash.slice(1)))) broken.push(`${href}: no such anchor`);
  }
}
const images = [...document.querySelectorAll("article img")];
return {
  title: document.title,
  h1: document.querySelector("article h1")?.textContent ?? null,
  codeBlocks: document.querySelectorAll("article pre code").length,
  broken,
  missingImages: images.filter((img) => !img.complete || img.naturalWidth === 0).map((img) => img.src),
  images: images.length,
  offSite: performance.getEntriesByType("resource").map((entry) => entry.name)
    .filter((name) => new URL(name).origin !== location.origin),
  styled: getComputedStyle(document.querySelector(".md-header")).position,
};
"""


def test_each_page_renders_with_working_links_and_images(
    browser: Browser, site: Path, site_url: str, tmp_path: Path
) -> None:
    page = browser.new_page()
    try:
        seen_images = 0
        for path in pages(site):
            page.goto(site_url + path)
            result = page.run_js(CHECK_PAGE)
            assert result["h1"], f"{path}: no heading in the article"
            assert result["title"].endswith("starlette_mw"), result["title"]
            assert result["styled"] == "sticky", f"{path}: the theme's stylesheet did not apply"
            assert result["broken"] == [], f"{path}: broken links {result['broken']}"
            assert result["missingImages"] == [], f"{path}: images not drawn {result['missingImages']}"
            assert result["offSite"] == [], f"{path}: loaded from another origin {result['offSite']}"
            seen_images += result["images"]
        assert seen_images >= 1  # the speed page's plot
        errors = [line for line in page.console if line.startswith("error")]
        assert errors == []

        page.goto(site_url)
        page.screenshot(tmp_path / "home.png")
        assert (tmp_path / "home.png").read_bytes().startswith(b"\x89PNG")
    finally:
        page.close()
