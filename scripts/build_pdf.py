#!/usr/bin/env python
"""The course as one PDF: every page of the built book, in the order of _toc.yml.

    python scripts/build_pdf.py [--html _build/html] [--out _build/pdf/anomaly-edu.pdf]

(``make pdf`` builds the book first, then runs this.)

The route: headless Chromium prints each built HTML page (``--print-to-pdf``, offline,
as the book's tests open it), and pypdf joins the pages. Jupyter Book's LaTeX builder
was the other candidate; it was not chosen because it cannot show what the book shows:
the figures are plotly's, drawn in the browser by JavaScript (LaTeX would get no image
of them), and the widgets and MathJax's typesetting are the browser's too. Printing the
HTML shows exactly the pages readers see, with the print style of book/_static/course.css
(no sidebars, code that wraps, no figure split between pages), needs no TeX installation
(a few GB), and reuses the book that ``make book`` already built.

Joining keeps what makes the PDF usable:

- a contents page (printed from HTML made here) and an outline: parts, pages, sections;
- links: the Colab badges and other web links as they are; a link to another page of
  the book (a file:// URL in Chromium's print) becomes a jump inside the PDF;
- Chromium's tags (headings, links, figures with their alt text), merged into one
  structure tree: screen readers read the figures' descriptions, and the test
  (tests/test_pdf.py) finds every figure of a page in it and checks it was drawn.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import html
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import yaml
from pypdf import PdfReader, PdfWriter
from pypdf.generic import ArrayObject, BooleanObject, DictionaryObject, NameObject, NullObject, NumberObject, PdfObject
from pypdf.generic import TextStringObject as Text

ROOT = Path(__file__).resolve().parent.parent
HTML = ROOT / "_build" / "html"
OUT = ROOT / "_build" / "pdf" / "anomaly-edu.pdf"
CHROMIUM_NAMES = ["chromium", "chromium-browser", "google-chrome"]
# Offline, as tests/test_book.py opens the book: every http(s) request goes to a proxy that
# does not exist. The virtual time budget lets MathJax and plotly finish before printing.
CHROMIUM_FLAGS = (
    "--headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking --disable-component-update "
    "--disable-sync --proxy-server=127.0.0.1:9 --virtual-time-budget=20000 "
    # Plotly draws each figure as wide as its column on the screen, and print does not redraw
    # it: a window this narrow makes the column narrower than the A4 page's, so no figure is
    # cut at the right edge (at 720 pixels and more, legends were).
    "--window-size=640,2000 "
    "--no-pdf-header-footer"  # its footer would print this machine's file:// path
).split()
CONTENTS_CSS = """
@page { size: A4; margin: 15mm 14mm; } body { font-family: sans-serif; margin: 0; }
h1 { font-size: 24pt; margin: 10mm 0 3mm; } .by { color: #555; margin-bottom: 8mm; }
ul { list-style: none; padding-left: 0; } ul ul { padding-left: 6mm; }
li.part { font-weight: bold; margin-top: 4mm; break-inside: avoid; }
li.part li { font-weight: normal; } li { margin: 1.2mm 0; }
a { display: flex; color: inherit; text-decoration: none; }
a::after { content: ""; flex: 1; order: 1; border-bottom: 1px dotted #999; margin: 0 2mm 1mm; }
a span { order: 2; }
"""


@dataclass
class Chapter:
    """One printed page of the book (``file`` as in _toc.yml), or the contents page."""

    file: str
    title: str
    part: str | None = None  # the caption of its part in _toc.yml
    headings: list[tuple[str, str]] = field(default_factory=list)  # (id, text) of its sections
    reader: PdfReader | None = None
    first: int = 0  # its first page in the joined PDF (0-based)


def entries(**items: PdfObject) -> DictionaryObject:
    """A PDF dictionary: entries(S=NameObject("/GoTo")) is << /S /GoTo >>."""
    return DictionaryObject({NameObject(f"/{key}"): value for key, value in items.items()})


def text_of(fragment: str) -> str:
    """The plain text of an HTML fragment, without the headings' '#' links."""
    fragment = re.sub(r'<a class="headerlink".*?</a>', "", fragment, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", fragment)).split())


def read_chapters(html_dir: Path, toc: Path = ROOT / "_toc.yml") -> list[Chapter]:
    """The book's pages in the order of _toc.yml, each with its title and sections."""
    spec = yaml.safe_load(toc.read_text(encoding="utf-8"))
    files = [(spec["root"], None)] + [
        (chapter["file"], part.get("caption")) for part in spec.get("parts", []) for chapter in part["chapters"]
    ]
    chapters = []
    for file, part in files:
        page = (html_dir / file).with_suffix(".html").read_text(encoding="utf-8")
        title = text_of(re.search(r"<h1>(.*?)</h1>", page, flags=re.S).group(1))
        sections = re.findall(r'<section id="([^"]+)">\s*<h2>(.*?)</h2>', page, flags=re.S)
        chapters.append(Chapter(file, title, part, [(anchor, text_of(text)) for anchor, text in sections]))
    return chapters


def find_chromium() -> str:
    for name in CHROMIUM_NAMES:
        if path := shutil.which(name):
            return path
    sys.exit("build_pdf: Chromium is needed to print the pages; install Debian's package: apt-get install chromium")


def print_page(chromium: str, page: Path, pdf: Path) -> Path:
    """Print one HTML page to a PDF with headless Chromium (its own profile: runs in parallel)."""
    pdf.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        where = [f"--user-data-dir={profile}", f"--print-to-pdf={pdf}", page.resolve().as_uri()]
        result = subprocess.run([chromium, *CHROMIUM_FLAGS, *where], capture_output=True, text=True, timeout=600)
    if result.returncode != 0 or not pdf.is_file():
        raise RuntimeError(f"chromium could not print {page} (exit code {result.returncode}):\n{result.stderr[-2000:]}")
    return pdf


def contents_html(chapters: list[Chapter], html_dir: Path, title: str, byline: str) -> str:
    """The contents page: the book's title, then each part and page with its page number.
    Its links point at the pages' HTML files: joining turns them into jumps in the PDF."""
    items, part = [], None
    for chapter in chapters:
        if chapter.part != part:
            items.append("</ul></li>" if part else "")
            items.append(f'<li class="part">{html.escape(chapter.part)}<ul>' if chapter.part else "")
            part = chapter.part
        link = (html_dir / chapter.file).with_suffix(".html").resolve().as_uri()
        items.append(f'<li><a href="{link}">{html.escape(chapter.title)}<span>{chapter.first + 1}</span></a></li>')
    items.append("</ul></li>" if part else "")
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{CONTENTS_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
        f'<p class="by">{html.escape(byline)}</p><h2>Contents</h2><ul>{"".join(items)}</ul></body></html>'
    )


def print_contents(chromium: str, chapters: list[Chapter], html_dir: Path, work: Path) -> PdfReader:
    """Print the contents page until the page numbers it shows account for its own length
    (twice: the first print, with numbers from 1, gives the length)."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    release = config.get("repository", {}).get("branch", "")
    byline = f"{config['author']} · release {release} · © {config['copyright']}"
    page, pages = work / "contents.html", 0
    while True:
        first = pages
        for chapter in chapters:
            chapter.first, first = first, first + len(chapter.reader.pages)
        page.write_text(contents_html(chapters, html_dir, config["title"], byline), encoding="utf-8")
        printed = PdfReader(print_page(chromium, page, work / "contents.pdf"))
        if len(printed.pages) == pages:
            return printed
        pages = len(printed.pages)


def anchors(chapter: Chapter, html_dir: Path) -> dict[str, tuple[int, float | None]]:
    """Where each id of a chapter's page lies in the joined PDF: 'path#id' -> a
    destination (Chromium names one per id); 'path' -> the chapter's first page."""
    path = (html_dir / chapter.file).with_suffix(".html").resolve().as_posix()
    found = {path: (chapter.first, None)}
    for name, destination in chapter.reader.named_destinations.items():
        page = chapter.first + chapter.reader.get_destination_page_number(destination)
        found[f"{path}#{name.lstrip('/')}"] = (page, destination.top)
    return found


def rewrite_links(writer: PdfWriter, chapters: list[Chapter], html_dir: Path) -> None:
    """Links to the book's own pages (file:// URLs, or the names of a page's own ids)
    jump inside the PDF; a link to a file the PDF does not hold is dropped."""
    targets = {key: value for chapter in chapters for key, value in anchors(chapter, html_dir).items()}
    bounds = [(chapter.first, chapter) for chapter in chapters]
    for number, page in enumerate(writer.pages):
        chapter = max((b for b in bounds if b[0] <= number), key=lambda b: b[0])[1]
        own = (html_dir / chapter.file).with_suffix(".html").resolve().as_posix()
        for annotation in page.get("/Annots", []):
            annotation = annotation.get_object()
            action = annotation["/A"].get_object() if "/A" in annotation else {}
            if "/Dest" in annotation:  # an id of the same page, by the name Chromium gave it
                target = targets.get(f"{own}#{str(annotation['/Dest']).lstrip('/')}")
            elif action.get("/S") == "/URI" and str(action["/URI"]).startswith("file:"):
                url = urlsplit(str(action["/URI"]))
                path = Path(unquote(url.path)).resolve().as_posix()
                target = targets.get(f"{path}#{url.fragment}", targets.get(path))
            else:
                continue
            annotation.pop("/Dest", None)
            annotation.pop("/A", None)
            if target is not None:
                top = NullObject() if target[1] is None else NumberObject(int(target[1]))
                there = writer.pages[target[0]].indirect_reference
                destination = ArrayObject([there, NameObject("/XYZ"), NullObject(), top, NullObject()])
                annotation[NameObject("/A")] = entries(S=NameObject("/GoTo"), D=destination)


def add_outline(writer: PdfWriter, chapters: list[Chapter]) -> None:
    """Bookmarks: each part, its pages, and each page's sections."""
    parts: dict[str, object] = {}
    for chapter in chapters[1:]:  # the contents page has none
        parent = None
        if chapter.part:
            parent = parts.get(chapter.part) or writer.add_outline_item(title=chapter.part, page_number=chapter.first)
            parts[chapter.part] = parent
        item = writer.add_outline_item(title=chapter.title, page_number=chapter.first, parent=parent)
        destinations = chapter.reader.named_destinations
        for anchor, text in chapter.headings:
            if f"/{anchor}" in destinations:
                page = chapter.reader.get_destination_page_number(destinations[f"/{anchor}"])
                writer.add_outline_item(title=text, page_number=chapter.first + page, parent=item)


def merge_structure(writer: PdfWriter, chapters: list[Chapter]) -> None:
    """One structure tree for the joined PDF: each chapter's tree (Chromium tags the
    headings, links and figures, with their alt text) becomes a /Part of one /Document,
    titled with the chapter's file; the keys that pages and links use to find their tags
    are shifted so that they stay unique (pypdf copies pages without their tags)."""
    parts, numbers, shift = ArrayObject(), ArrayObject(), 0
    root = writer._add_object(entries(Type=NameObject("/StructTreeRoot"))).get_object()  # no public way
    document = writer._add_object(entries(Type=NameObject("/StructElem"), S=NameObject("/Document"), K=parts))
    document = document.get_object()
    document[NameObject("/P")] = root.indirect_reference
    for chapter in chapters:
        tree = chapter.reader.root_object["/StructTreeRoot"]
        element = tree["/K"].get_object()
        element[NameObject("/P")] = document.indirect_reference  # the clone stops here
        element[NameObject("/S")] = NameObject("/Part")
        element[NameObject("/T")] = Text(chapter.file)
        parts.append(element.clone(writer).indirect_reference)
        nums = tree["/ParentTree"]["/Nums"]
        for key, value in zip(nums[::2], nums[1::2]):
            numbers += [NumberObject(key + shift), value.clone(writer)]
        for number, source in enumerate(chapter.reader.pages):
            page = writer.pages[chapter.first + number]
            if "/StructParents" in source:
                page[NameObject("/StructParents")] = NumberObject(source["/StructParents"] + shift)
            for annotation in page.get("/Annots", []):
                annotation = annotation.get_object()
                if "/StructParent" in annotation:
                    annotation[NameObject("/StructParent")] = NumberObject(annotation["/StructParent"] + shift)
        shift += int(tree["/ParentTreeNextKey"])
    root.update(
        entries(K=document.indirect_reference, ParentTree=entries(Nums=numbers), ParentTreeNextKey=NumberObject(shift))
    )
    marked = entries(Marked=BooleanObject(True))
    writer.root_object.update(entries(StructTreeRoot=root.indirect_reference, MarkInfo=marked, Lang=Text("en")))


def build_pdf(html_dir: Path = HTML, out: Path = OUT, chromium: str | None = None, jobs: int = 2) -> Path:
    """Print every page of the built book and join them into ``out``; return ``out``.
    The printed pages are kept beside it, in ``pages/``."""
    chromium = chromium or find_chromium()
    chapters = read_chapters(html_dir)
    pages = out.parent / "pages"
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        printed = pool.map(
            lambda c: print_page(chromium, (html_dir / c.file).with_suffix(".html"), pages / f"{c.file}.pdf"), chapters
        )
        for chapter, pdf in zip(chapters, printed):
            chapter.reader = PdfReader(pdf)
    contents = Chapter("contents", "Contents", reader=print_contents(chromium, chapters, html_dir, pages))
    chapters.insert(0, contents)
    writer = PdfWriter()
    for chapter in chapters:
        writer.append(chapter.reader, import_outline=False)
    writer.root_object.pop("/Names", None)  # the pages' own names collide; links use explicit jumps
    rewrite_links(writer, chapters, html_dir)
    add_outline(writer, chapters)
    merge_structure(writer, chapters)
    writer.add_metadata({"/Title": contents.reader.metadata.title, "/Creator": "scripts/build_pdf.py"})
    writer.page_mode = "/UseOutlines"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as file:
        writer.write(file)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--html", type=Path, default=HTML, help="the built book (default: _build/html)")
    parser.add_argument("--out", type=Path, default=OUT, help="the PDF to write (default: _build/pdf/anomaly-edu.pdf)")
    parser.add_argument("--jobs", type=int, default=2, help="pages printed at once (default: 2)")
    args = parser.parse_args(argv)
    if not (args.html / "index.html").is_file():
        sys.exit(f"build_pdf: no built book in {args.html}; run `make book` first")
    pdf = build_pdf(args.html, args.out, jobs=args.jobs)
    print(f"pdf: {pdf}: {len(PdfReader(pdf).pages)} pages, {pdf.stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
