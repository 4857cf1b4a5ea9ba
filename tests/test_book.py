"""The built book: it builds with warnings as errors, works offline, and renders.

The book is built once per test session by ``scripts/build_course.py``'s functions;
notebooks whose executed copies are up to date are not run again. The lecture pages
are then opened in headless Chromium (Debian's ``chromium`` package) with the
network switched off, and the rendered pages are checked for plotly figures (every
one drawn), math typeset by MathJax and a widget drawn by the widget manager.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from anomaly_edu.data import data_root

pytestmark = pytest.mark.book

ROOT = Path(__file__).resolve().parent.parent
LECTURE_1 = "lectures/01_autoencoders"
# A lecture page's own HTML; plotly.js and the other scripts are files of their own.
MAX_LECTURE_PAGE_BYTES = 1_500_000

# Chromium with no network: every http(s) request goes to a proxy that does not exist.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--proxy-server=127.0.0.1:9",
    "--virtual-time-budget=20000",
    "--dump-dom",
]


def load_build_course():
    spec = importlib.util.spec_from_file_location("build_course", ROOT / "scripts" / "build_course.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_course = load_build_course()


# --- reading HTML -----------------------------------------------------------
VOID_TAGS = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "param",
    "source",
    "track",
    "wbr",
}


class Element:
    def __init__(self, tag: str, attrs: dict, ancestors: list[Element]):
        self.tag, self.attrs, self.ancestors = tag, attrs, ancestors
        self.classes = set((attrs.get("class") or "").split())

    def inside(self, css_class: str) -> bool:
        return any(css_class in parent.classes for parent in self.ancestors)


class ElementCollector(HTMLParser):
    """Every element of a page, with its ancestors (script contents are text)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self.open: list[Element] = []

    def handle_starttag(self, tag, attrs):
        element = Element(tag, dict(attrs), list(self.open))
        self.elements.append(element)
        if tag not in VOID_TAGS:
            self.open.append(element)

    def handle_startendtag(self, tag, attrs):
        self.elements.append(Element(tag, dict(attrs), list(self.open)))

    def handle_endtag(self, tag):
        for depth in range(len(self.open) - 1, -1, -1):
            if self.open[depth].tag == tag:
                del self.open[depth:]
                break


def elements(html: str) -> list[Element]:
    collector = ElementCollector()
    collector.feed(html)
    collector.close()
    return collector.elements


# --- fixtures ----------------------------------------------------------------
# book_html (the built book) and chromium are conftest.py's: tests/test_pdf.py shares them.
def rendered(page: Path, chromium: str, profile: Path) -> list[Element]:
    """A page as Chromium renders it offline, after its scripts have run."""
    result = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0 and "</html>" in result.stdout, (
        f"chromium failed on {page.name} (exit code {result.returncode}):\n{result.stderr[-3000:]}"
    )
    return elements(result.stdout)


@pytest.fixture(scope="session")
def lecture_doms(book_html, chromium, tmp_path_factory) -> dict[str, list[Element]]:
    """Every lecture page, as Chromium renders it: "lectures/<name>" -> elements."""
    pages = sorted((book_html / "lectures").glob("*.html"))
    assert pages, "no lecture page was built"
    profile = tmp_path_factory.mktemp("chromium-profile")
    return {f"lectures/{page.stem}": rendered(page, chromium, profile) for page in pages}


@pytest.fixture(scope="session")
def lecture_1_dom(book_html, lecture_doms) -> list[Element]:
    page = book_html / f"{LECTURE_1}.html"
    assert page.is_file(), f"{page} was not built; is {LECTURE_1} in _toc.yml?"
    return lecture_doms[LECTURE_1]


def config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def toc_files() -> set[str]:
    """Every `file:` entry of _toc.yml, plus the root."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = {toc["root"]}
    for part in toc.get("parts", []):
        files.update(chapter["file"] for chapter in part.get("chapters", []))
    files.update(chapter["file"] for chapter in toc.get("chapters", []))
    return files


# --- tests that need no build ------------------------------------------------
def test_every_lecture_and_exercise_is_in_the_toc():
    notebooks = sorted(ROOT.glob("lectures/*.ipynb")) + sorted(ROOT.glob("exercises/*.ipynb"))
    missing = [
        str(nb.relative_to(ROOT).with_suffix(""))
        for nb in notebooks
        if str(nb.relative_to(ROOT).with_suffix("")) not in toc_files()
    ]
    assert not missing, f"add these pages to _toc.yml: {missing}"


def lecture_of(exercise: Path) -> Path:
    """The lecture an exercise goes with: ex05b_shortcut -> lectures/05_*.ipynb."""
    (lecture,) = ROOT.glob(f"lectures/{exercise.name[2:4]}_*.ipynb")
    return lecture


def markdown_links(notebook: Path) -> set[str]:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    text = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    return set(re.findall(r"\]\(([^)#]+)\)", text))


@pytest.mark.parametrize("exercise", sorted(ROOT.glob("exercises/ex*.ipynb")), ids=lambda p: p.stem)
def test_each_exercise_links_to_its_lecture_and_the_lecture_back_to_it(exercise):
    lecture = lecture_of(exercise)
    assert f"../lectures/{lecture.name}" in markdown_links(exercise), f"{exercise.name} has no link to {lecture.name}"
    assert f"../exercises/{exercise.name}" in markdown_links(lecture), f"{lecture.name} has no link to {exercise.name}"


@pytest.mark.parametrize("lecture", sorted(ROOT.glob("lectures/*.ipynb")), ids=lambda p: p.stem)
def test_each_lecture_cites_its_sources_and_every_key_is_in_the_bibliography(lecture):
    keys = set(re.findall(r"^@\w+\{([^,]+),", (ROOT / "book" / "references.bib").read_text(encoding="utf-8"), re.M))
    cells = json.loads(lecture.read_text(encoding="utf-8"))["cells"]
    text = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    cited = set(re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", text))
    cited = {key.strip() for group in cited for key in group.split(",")}
    assert cited, f"{lecture.name} cites nothing: cite the papers and code it relies on ({{cite:p}}`key`)"
    assert cited <= keys, f"{lecture.name} cites keys that book/references.bib lacks: {sorted(cited - keys)}"


# --- the rendered lectures -----------------------------------------------------
def test_plotly_figure_is_drawn(lecture_1_dom):
    figures = [e for e in lecture_1_dom if e.tag == "svg" and "main-svg" in e.classes and e.inside("plotly-graph-div")]
    assert figures, (
        f"no plotly figure was drawn on {LECTURE_1}: no svg.main-svg inside a "
        ".plotly-graph-div (is _static/plotly/plotly.min.js there, and linked "
        "by the page?)"
    )


def plotly_figures(dom: list[Element]) -> tuple[list[Element], list[Element]]:
    """The plotly figures of a rendered page, and those that plotly.js drew: a
    .plotly-graph-div holding an svg.main-svg."""
    figures = [e for e in dom if "plotly-graph-div" in e.classes]
    holding_a_drawing = {
        id(parent) for e in dom if e.tag == "svg" and "main-svg" in e.classes for parent in e.ancestors
    }
    return figures, [figure for figure in figures if id(figure) in holding_a_drawing]


def test_every_plotly_figure_of_every_lecture_is_drawn(lecture_doms):
    total, undrawn = 0, []
    for name, dom in lecture_doms.items():
        figures, drawn = plotly_figures(dom)
        total += len(figures)
        if len(drawn) < len(figures):
            undrawn.append(f"{name}: {len(drawn)} of {len(figures)} figures drawn")
    assert total, "no lecture page has a plotly figure"
    assert not undrawn, (
        "plotly.js did not draw every figure (is _static/plotly/plotly.min.js "
        "there, and linked by the page?):\n" + "\n".join(undrawn)
    )


def test_math_is_typeset_by_mathjax(lecture_1_dom):
    typeset = [e for e in lecture_1_dom if e.tag == "mjx-container"]
    assert typeset, (
        f"MathJax 3 typeset nothing on {LECTURE_1} (no mjx-container); "
        "is book/_offline_assets/mathjax/ there and mathjax_path right?"
    )
    errors = [e for e in lecture_1_dom if e.tag == "mjx-merror"]
    assert not errors, f"MathJax reported {len(errors)} error(s) in the math of {LECTURE_1}"


def test_widget_is_rendered(lecture_1_dom):
    widgets = [e for e in lecture_1_dom if e.classes & {"widget-slider", "jupyter-widgets"}]
    assert widgets, (
        f"no widget was rendered on {LECTURE_1}; the widget manager needs "
        "require.js and embed-amd.js from _static/ and the widget state saved "
        "in the executed notebook"
    )


def test_every_plotly_figure_has_an_accessible_name(lecture_doms):
    """Plotly draws a figure as SVG in a <div>, which has no alt text: book/_static/figures.js
    names each drawn figure by its title (role="img", aria-label), for screen readers and
    for the figure tags of the course's PDF."""
    unnamed = [
        f"{name}: the plotly figure {figure.attrs.get('id')}"
        for name, dom in lecture_doms.items()
        for figure in plotly_figures(dom)[0]
        if figure.attrs.get("role") != "img" or not (figure.attrs.get("aria-label") or "").strip()
    ]
    assert not unnamed, (
        "plotly figures without an accessible name (is _static/figures.js there, and linked by the page?):\n"
        + "\n".join(unnamed)
    )


# --- every page ----------------------------------------------------------------
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp")


def missing_alt_text(page: Path, book_html: Path) -> list[str]:
    """`page: <img src=...>` for every image of a page without a meaningful alt text: none,
    blank, or only the image's file name or path (Sphinx's default for an image directive)."""
    found = []
    for element in elements(page.read_text(encoding="utf-8")):
        if element.tag != "img":
            continue
        alt, src = (element.attrs.get("alt") or "").strip(), element.attrs.get("src") or ""
        if not alt or alt == src or alt.lower().endswith(IMAGE_SUFFIXES):
            shown = src if not src.startswith("data:") else src[:40] + "..."
            found.append(f"{page.relative_to(book_html)}: <img src={shown!r} alt={alt!r}>")
    return found


def test_every_image_has_alt_text(book_html):
    """Students who use a screen reader hear the alt text in place of an image. Markdown
    images say it in brackets, ![what it shows](file.png); a notebook's image output gets
    it from the cell's metadata (myst-nb: mystnb: image: alt: ...)."""
    missing = [line for page in sorted(book_html.rglob("*.html")) for line in missing_alt_text(page, book_html)]
    assert not missing, "images without alt text (say what each one shows):\n" + "\n".join(missing)


def test_lecture_pages_are_light(book_html):
    pages = sorted((book_html / "lectures").glob("*.html"))
    assert pages, "no lecture page was built"
    largest = max(pages, key=lambda page: page.stat().st_size)
    size = largest.stat().st_size
    assert size < MAX_LECTURE_PAGE_BYTES, (
        f"{largest.relative_to(book_html)} is {size / 1e6:.2f} MB of HTML, more than "
        f"{MAX_LECTURE_PAGE_BYTES / 1e6} MB: does it embed plotly.js again (the book links "
        "its own copy, see stage_notebook in scripts/book_pages.py), or a large figure?"
    )


def test_lecture_pages_show_no_nbval_markers(book_html):
    """The markers are for CI; the book's readers see the code without them."""
    marked = [page.name for page in sorted((book_html / "lectures").glob("*.html")) if "NBVAL_" in page.read_text()]
    assert not marked, f"pages show nbval markers (stage_notebook removes them): {marked}"


def machine_paths() -> dict[str, Path]:
    """Absolute paths of the machine that built the book."""
    return {"repository root": ROOT, "data root": data_root(), "home directory": Path.home()}


def test_no_page_shows_a_path_of_the_build_machine(book_html):
    """Neither the pages nor the notebooks they offer for download."""
    found = []
    for page in sorted([*book_html.rglob("*.html"), *book_html.rglob("*.ipynb")]):
        text = page.read_text(encoding="utf-8")
        for what, path in machine_paths().items():
            # the path, not the start of a longer name: /root/x matches, /rooted does not
            if re.search(re.escape(str(path)) + r"(?![\w.-])", text):
                found.append(f"{page.relative_to(book_html)}: the {what} {path}")
    assert not found, (
        "the book shows paths of the machine that built it (print what is there, not where):\n" + "\n".join(found)
    )


def remote_loads(book_html: Path, attributes: dict[str, str]) -> list[str]:
    """`page: <tag attribute=url>` for every element that loads a URL from the network."""
    found = []
    for page in sorted(book_html.rglob("*.html")):
        for element in elements(page.read_text(encoding="utf-8")):
            attribute = attributes.get(element.tag)
            url = (element.attrs.get(attribute) or "") if attribute else ""
            if url.startswith(("http://", "https://", "//")):
                found.append(f"{page.relative_to(book_html)}: <{element.tag} {attribute}={url}>")
    return found


def test_no_script_or_stylesheet_comes_from_the_network(book_html):
    remote = remote_loads(book_html, {"script": "src", "link": "href"})
    assert not remote, (
        "the book must work offline, but these pages load scripts or styles from the network:\n" + "\n".join(remote)
    )


def test_no_image_or_frame_comes_from_the_network(book_html):
    remote = remote_loads(
        book_html,
        {
            "img": "src",
            "iframe": "src",
            "source": "src",
            "video": "src",
            "audio": "src",
            "embed": "src",
            "object": "data",
        },
    )
    assert not remote, (
        "the book must work offline, but these pages load images or "
        "frames from the network (use a local file or a text link):\n" + "\n".join(remote)
    )


def test_every_lecture_page_has_an_open_in_colab_link(book_html):
    settings = config()
    repository = settings["repository"]["url"].rstrip("/").removeprefix("https://github.com/")
    colab = settings["launch_buttons"]["colab_url"].rstrip("/")
    branch = settings["repository"].get("branch", "main")
    pages = sorted((book_html / "lectures").glob("*.html"))
    assert pages, "no lecture page was built"
    for page in pages:
        expected = f"{colab}/github/{repository}/blob/{branch}/lectures/{page.stem}.ipynb"
        links = [e.attrs.get("href") for e in elements(page.read_text(encoding="utf-8")) if e.tag == "a"]
        assert expected in links, f"{page.name} has no 'Open in Colab' link to {expected}"


def test_exercise_pages_show_no_outputs(book_html):
    pages = sorted((book_html / "exercises").glob("*.html"))
    assert pages, "no exercise page was built"
    for page in pages:
        outputs = [e for e in elements(page.read_text(encoding="utf-8")) if "cell_output" in e.classes]
        assert not outputs, f"{page.name} shows {len(outputs)} output(s); students get none"


def test_run_statistics_page_lists_every_notebook(book_html):
    text = (book_html / "book" / "run_statistics.html").read_text(encoding="utf-8")
    assert build_course.STATISTICS_MARKER not in text
    notebooks = build_course.find_notebooks(build_course.EXECUTE_CHECKED + build_course.EXECUTE_AS_STUDENT)
    for notebook in notebooks:
        assert notebook.as_posix() in text, f"the run statistics do not list {notebook}"


def test_the_built_pages_link_each_exercise_and_its_lecture_both_ways(book_html):
    for exercise in sorted(ROOT.glob("exercises/ex*.ipynb")):
        lecture = lecture_of(exercise)
        pages = {
            "exercise": (book_html / "exercises" / f"{exercise.stem}.html", f"../lectures/{lecture.stem}.html"),
            "lecture": (book_html / "lectures" / f"{lecture.stem}.html", f"../exercises/{exercise.stem}.html"),
        }
        for page, target in pages.values():
            links = {
                e.attrs.get("href", "").split("#")[0]
                for e in elements(page.read_text(encoding="utf-8"))
                if e.tag == "a"
            }
            assert target in links, f"{page.name} does not link to {target} in the built book"
