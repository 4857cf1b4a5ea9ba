"""scripts/site_layout.py, the layout of the published book (one folder per release),
on a tiny fake book: a few HTML files written here, three releases published in turn.

Where Debian's ``chromium`` is installed, the site's root page is opened offline in
headless Chromium, which must land on the newest release.
"""

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from test_book import CHROMIUM_FLAGS  # Chromium with no network, as the book's test opens it

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("site_layout", ROOT / "scripts" / "site_layout.py")
site_layout = importlib.util.module_from_spec(spec)
spec.loader.exec_module(site_layout)

PAGE = """<!DOCTYPE html>
<html><head><title>{title}</title></head>
<body data-bs-spy="scroll"><h1>{title}</h1><p>{text}</p></body></html>
"""


def fake_book(folder: Path, version: str) -> Path:
    """A built book in Jupyter Book's shape: pages at two depths, assets, Sphinx's .buildinfo."""
    pages = {
        "index.html": ("Anomaly detection", f"the book of {version}"),
        "lectures/01_autoencoders.html": ("Lecture 1", f"Lecture 1 of {version}"),
        "book/setup.html": ("Setup", "how to set up"),
    }
    for name, (title, text) in pages.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(PAGE.format(title=title, text=text))
    (folder / "_static").mkdir()
    (folder / "_static" / "widget.html").write_text("<html><body>an asset, not a page</body></html>")
    (folder / ".buildinfo").write_text("# Sphinx build info version 1\n")
    return folder


def publish(tmp_path: Path, version: str, site: Path) -> list[str]:
    return site_layout.lay_out(fake_book(tmp_path / f"built-{version}", version), version, site)


def banners(page: Path) -> list[str]:
    """The releases named by the banners of ``page``."""
    return [part.split('"')[0] for part in page.read_text().split('data-release="')[1:]]


@pytest.fixture
def site(tmp_path) -> Path:
    """A site where v0.1.0, then v0.2.0, then a fix of the old release, v0.1.1, were published."""
    site = tmp_path / "site"
    assert publish(tmp_path, "v0.1.0", site) == ["v0.1.0"]
    assert publish(tmp_path, "v0.2.0", site) == ["v0.2.0", "v0.1.0"]
    assert publish(tmp_path, "v0.1.1", site) == ["v0.2.0", "v0.1.1", "v0.1.0"]
    return site


def test_each_release_has_its_own_folder_and_latest_is_the_newest(site):
    assert sorted(p.name for p in site.iterdir()) == [
        ".nojekyll",
        "index.html",
        "latest",
        "releases.html",
        "releases.json",
        "v0.1.0",
        "v0.1.1",
        "v0.2.0",
    ]
    for version in ("v0.1.0", "v0.1.1", "v0.2.0"):
        assert f"Lecture 1 of {version}" in (site / version / "lectures" / "01_autoencoders.html").read_text()
        assert not (site / version / ".buildinfo").exists()
    assert "Lecture 1 of v0.2.0" in (site / "latest" / "lectures" / "01_autoencoders.html").read_text()
    assert json.loads((site / "releases.json").read_text()) == {
        "newest": "v0.2.0",
        "releases": ["v0.2.0", "v0.1.1", "v0.1.0"],
    }


def test_the_root_page_redirects_to_the_newest_release_and_another_lists_them_all(site):
    index = (site / "index.html").read_text()
    assert '<meta http-equiv="refresh" content="0; url=v0.2.0/index.html">' in index
    assert 'window.location.replace("v0.2.0/index.html"' in index
    listing = (site / "releases.html").read_text()
    assert "refresh" not in listing and "location" not in listing  # the list itself stays put
    for version in ("v0.1.0", "v0.1.1", "v0.2.0"):
        assert f'<a href="{version}/index.html">{version}</a>' in index
        assert f'<a href="{version}/index.html">{version}</a>' in listing


def test_every_page_is_stamped_once_with_its_release_and_links_to_the_newest(site):
    old = site / "v0.1.0" / "lectures" / "01_autoencoders.html"
    assert banners(old) == ["v0.1.0"]  # stamped again at each release, never twice
    text = old.read_text()
    assert 'The newest is <a href="../../v0.2.0/index.html">v0.2.0</a>' in text
    assert '<a href="../../releases.html">All releases</a>' in text
    assert text.index("<body") < text.index("data-release") < text.index("<h1>")  # at the top of the page
    assert banners(site / "v0.1.1" / "index.html") == ["v0.1.1"]
    assert 'href="../v0.2.0/index.html"' in (site / "v0.1.1" / "index.html").read_text()
    for page in (site / "v0.2.0" / "index.html", site / "latest" / "book" / "setup.html"):
        assert banners(page) == ["v0.2.0"] and "the newest" in page.read_text()
    assert banners(site / "v0.2.0" / "_static" / "widget.html") == []  # assets are left alone


def test_a_release_published_again_replaces_its_folder(site, tmp_path):
    built = fake_book(tmp_path / "rebuilt", "v0.1.1")
    (built / "lectures" / "01_autoencoders.html").unlink()
    site_layout.lay_out(built, "v0.1.1", site)
    assert not (site / "v0.1.1" / "lectures" / "01_autoencoders.html").exists()
    assert (site / "v0.1.0" / "lectures" / "01_autoencoders.html").exists()


@pytest.mark.parametrize("tag", ["latest", "../v0.1.0", "v0.1", "0.1.0", "v0.1.0/x"])
def test_only_a_release_tag_names_a_folder(tmp_path, tag):
    with pytest.raises(ValueError, match="is not a release tag"):
        site_layout.lay_out(fake_book(tmp_path / "built", "x"), tag, tmp_path / "site")
    assert not (tmp_path / "site").exists()


def test_a_book_that_was_not_built_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="build the book first"):
        site_layout.lay_out(tmp_path / "empty", "v0.1.0", tmp_path / "site")


def test_pre_releases_sort_before_their_release():
    tags = ["v0.10.0", "v1.0.0rc1", "v0.9.1", "v1.0.0", "v0.2.0"]
    assert sorted(tags, key=site_layout.release_key, reverse=True) == [
        "v1.0.0",
        "v1.0.0rc1",
        "v0.10.0",
        "v0.9.1",
        "v0.2.0",
    ]


def test_the_command_line(tmp_path, capsys):
    site_layout.main([str(fake_book(tmp_path / "built", "v0.3.0")), "v0.3.0", str(tmp_path / "site")])
    assert "releases v0.3.0; newest v0.3.0" in capsys.readouterr().out


def test_chromium_opening_the_site_lands_on_the_newest_release(site, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    command = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", (site / "index.html").as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    dom = result.stdout
    assert "the book of v0.2.0" in dom, dom[:2000]  # the newest release's own page, not the list
    assert 'data-release="v0.2.0"' in dom and "the newest" in dom
