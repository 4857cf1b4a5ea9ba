"""The course's PDF (`make pdf`, scripts/build_pdf.py), made from the session's built book.

Each page of the book starts at its bookmark with its title; every figure of a page
(an image, or a plotly figure, which book/_static/figures.js names once drawn) is a
figure tag of the PDF under which something was painted; the Colab badges are links.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from pypdf import PdfReader
from pypdf.generic import ArrayObject, ContentStream, DictionaryObject
from test_book import elements

pytestmark = pytest.mark.book

ROOT = Path(__file__).resolve().parent.parent
MAX_PDF_BYTES = 60_000_000
# What paints a figure: filling or stroking a path, an image, a shading (not text alone).
PAINTING = {b"f", b"F", b"f*", b"B", b"B*", b"b", b"b*", b"S", b"s", b"Do", b"sh"}


def load_build_pdf():
    spec = importlib.util.spec_from_file_location("build_pdf", ROOT / "scripts" / "build_pdf.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # before running it: its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


build_pdf = load_build_pdf()


@pytest.fixture(scope="session")
def course_pdf(book_html, chromium, tmp_path_factory) -> Path:
    return build_pdf.build_pdf(book_html, tmp_path_factory.mktemp("pdf") / "anomaly-edu.pdf", chromium=chromium)


@pytest.fixture(scope="session")
def reader(course_pdf) -> PdfReader:
    return PdfReader(course_pdf)


@pytest.fixture(scope="session")
def chapters(book_html) -> list:
    return build_pdf.read_chapters(book_html)


def bookmarks(reader: PdfReader) -> dict[str, int]:
    """title -> page (0-based) of every outline item, at any depth."""
    found, stack = {}, list(reader.outline)
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        else:
            found.setdefault(str(item.title), reader.get_destination_page_number(item))
    return found


def squeezed(text: str) -> str:
    """Text without white space: a line break in the PDF may or may not keep a space."""
    return "".join(text.split())


# --- the structure tree: the figures and what was painted for them ---------------
def kids(element: DictionaryObject) -> list:
    k = element.get("/K")
    if k is None:
        return []
    k = k.get_object()
    return list(k) if isinstance(k, ArrayObject) else [k]


def marked_content(element: DictionaryObject, page=None) -> Iterator[tuple[int, int]]:
    """(page object number, marked-content id) of everything tagged under an element."""
    page = element.get("/Pg", page)
    for kid in kids(element):
        kid = kid.get_object()
        if isinstance(kid, DictionaryObject) and kid.get("/Type") == "/MCR":
            yield kid.get("/Pg", page).idnum, int(kid["/MCID"])
        elif isinstance(kid, DictionaryObject) and "/S" in kid:
            yield from marked_content(kid, page)
        elif not isinstance(kid, DictionaryObject):
            yield page.idnum, int(kid)


def figures(element: DictionaryObject) -> Iterator[DictionaryObject]:
    """Every /Figure tag with an alt text under an element (not those inside it)."""
    if element.get("/S") == "/Figure" and element.get("/Alt"):
        yield element
        return
    for kid in kids(element):
        kid = kid.get_object()
        if isinstance(kid, DictionaryObject) and "/S" in kid:
            yield from figures(kid)


def painted_ids(reader: PdfReader, page) -> set[int]:
    """The marked-content ids of a page under which something is painted."""
    found, open_ids = set(), []
    for operands, operator in ContentStream(page.get_contents(), reader).operations:
        if operator in (b"BDC", b"BMC"):
            properties = operands[-1] if operator == b"BDC" else None
            open_ids.append(properties.get("/MCID") if isinstance(properties, DictionaryObject) else None)
        elif operator == b"EMC" and open_ids:
            open_ids.pop()
        elif operator in PAINTING:
            found.update(int(i) for i in open_ids if i is not None)
    return found


def drawn_figures(reader: PdfReader) -> dict[str, list[str]]:
    """chapter file -> the alt texts of its figures under which something was painted."""
    pages = {page.indirect_reference.idnum: page for page in reader.pages}
    painted = {}
    document = reader.root_object["/StructTreeRoot"]["/K"].get_object()
    drawn = {}
    for part in (kid.get_object() for kid in kids(document)):
        drawn[str(part["/T"])] = []
        for figure in figures(part):
            for page, mcid in marked_content(figure):
                if page not in painted:
                    painted[page] = painted_ids(reader, pages[page])
                if mcid in painted[page]:
                    drawn[str(part["/T"])].append(str(figure["/Alt"]))
                    break
    return drawn


def html_figures(page: Path) -> list[str]:
    """The figures a page of the book shows: its article's images and plotly figures."""
    found = []
    for element in elements(page.read_text(encoding="utf-8")):
        if element.inside("bd-article") and element.tag == "img":
            found.append(f"image {element.attrs.get('alt')!r}")
        elif "plotly-graph-div" in element.classes:
            found.append(f"plotly figure {element.attrs.get('id')}")
    return found


# --- the tests ---------------------------------------------------------------------
def test_the_pdf_states_its_size(course_pdf, reader, chapters, capsys):
    size, pages = course_pdf.stat().st_size, len(reader.pages)
    with capsys.disabled():
        print(f"\nthe course's PDF: {pages} pages, {size / 1e6:.1f} MB ({len(chapters)} pages of the book)")
    assert pages > len(chapters)
    assert size < MAX_PDF_BYTES, f"the PDF is {size / 1e6:.1f} MB; more than {MAX_PDF_BYTES / 1e6:.0f} MB to download"


def test_every_page_of_the_book_starts_at_its_bookmark_with_its_title(reader, chapters, book_html):
    lectures = {f"lectures/{page.stem}" for page in (book_html / "lectures").glob("*.html")}
    assert lectures <= {chapter.file for chapter in chapters}, "a lecture is missing from _toc.yml"
    marks, wrong = bookmarks(reader), []
    for chapter in chapters:
        if chapter.title not in marks:
            wrong.append(f"{chapter.file}: no bookmark {chapter.title!r}")
        elif squeezed(chapter.title) not in squeezed(reader.pages[marks[chapter.title]].extract_text()):
            wrong.append(f"{chapter.file}: {chapter.title!r} is not on page {marks[chapter.title] + 1}")
    contents = squeezed(reader.pages[0].extract_text())
    wrong += [f"{c.file}: not on the contents page" for c in chapters if squeezed(c.title) not in contents]
    assert not wrong, "\n".join(wrong)


def test_every_figure_of_the_book_is_drawn_in_the_pdf(reader, chapters, book_html):
    drawn, wrong = drawn_figures(reader), []
    for chapter in chapters:
        shown = html_figures((book_html / chapter.file).with_suffix(".html"))
        found = drawn.get(chapter.file, [])
        if len(found) != len(shown):
            wrong.append(
                f"{chapter.file}: {len(shown)} figures in the HTML, {len(found)} drawn in the PDF\n"
                f"  HTML: {shown}\n  PDF:  {found}"
            )
    assert not wrong, (
        "figures missing from the PDF (not drawn when Chromium printed the page: is plotly.js there, and "
        "the virtual time budget long enough? is _static/figures.js linked, which names them?):\n" + "\n".join(wrong)
    )


def test_the_colab_badges_are_links_and_no_link_points_at_this_machine(reader, chapters):
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repository = config["repository"]["url"].rstrip("/").removeprefix("https://github.com/")
    colab = config["launch_buttons"]["colab_url"].rstrip("/")
    branch = config["repository"].get("branch", "main")
    uris = []
    for page in reader.pages:
        for annotation in page.get("/Annots", []):
            action = annotation.get_object().get("/A")
            if action is not None and action.get_object().get("/S") == "/URI":
                uris.append(str(action.get_object()["/URI"]))
    notebooks = [c.file for c in chapters if c.file.startswith(("lectures/", "exercises/"))]
    missing = [n for n in notebooks if f"{colab}/github/{repository}/blob/{branch}/{n}.ipynb" not in uris]
    assert not missing, f"no 'Open in Colab' link in the PDF for: {missing}"
    local = sorted({uri for uri in uris if uri.startswith("file:")})
    assert not local, "links to files of the machine that built the PDF:\n" + json.dumps(local, indent=1)
