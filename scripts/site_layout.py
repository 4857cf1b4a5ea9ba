"""Lay out the book's web site so that every release keeps its own pages.

    python scripts/site_layout.py _build/html v0.2.0 site/

copies the built book (``_build/html``) into ``site/v0.2.0/``, next to the releases
already in ``site/`` (the GitHub Pages workflow, .github/workflows/pages.yml, checks
them out of the ``gh-pages`` branch), then:

- ``site/latest/`` becomes a copy of the newest release (a stable address to link to);
- ``site/index.html`` sends a reader to the newest release; ``site/releases.html`` lists them all;
- every page of every release gets a small banner that names its release and links
  to the newest one (older releases are stamped again, so that each says which is newest);
- ``site/releases.json`` lists the releases, newest first, and ``site/.nojekyll`` tells
  GitHub Pages to serve the folders whose names start with ``_`` (``_static``).

A release folder already in ``site/`` with the same name is replaced. The newest release
is the highest version number, not the one published last (a fix to an old release does
not become the default).
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
from pathlib import Path

# A release is a tag such as v0.1.0, or v1.0.0rc1 / v1.0.0-beta.2 for a pre-release.
RELEASE = re.compile(r"^v(\d+)\.(\d+)\.(\d+)([-.]?[A-Za-z0-9]+(\.[A-Za-z0-9]+)*)?$")
LATEST = "latest"
BANNER_START, BANNER_END = "<!-- site_layout: release banner -->", "<!-- /site_layout -->"
SKIPPED_FOLDERS = {"_static", "_sources", "_images"}  # assets, not the book's pages


def release_key(name: str) -> tuple:
    """Sort key of a release tag: by its numbers, and a release after its own pre-releases."""
    match = RELEASE.match(name)
    if match is None:
        raise ValueError(f"{name!r} is not a release tag such as v0.1.0")
    numbers = tuple(int(part) for part in match.group(1, 2, 3))
    suffix = match.group(4) or ""
    return (*numbers, suffix == "", suffix)


def releases(site: Path) -> list[str]:
    """The release folders of ``site``, newest first."""
    found = [p.name for p in site.iterdir() if p.is_dir() and RELEASE.match(p.name)] if site.is_dir() else []
    return sorted(found, key=release_key, reverse=True)


def banner(release: str, newest: str, depth: int) -> str:
    """The banner of a page ``depth`` folders below the site's root that belongs to ``release``."""
    up = "../" * depth
    if release == newest:
        text = f"Course release <strong>{release}</strong>, the newest."
    else:
        text = (
            f'Course release <strong>{release}</strong>. The newest is <a href="{up}{newest}/index.html">{newest}</a>.'
        )
    return (
        f"{BANNER_START}"
        f'<div class="anomaly-edu-release" data-release="{release}" role="note" '
        'style="background:#fff3cd;color:#3d3000;padding:.4em 1em;text-align:center;font-size:.9em;">'
        f'{text} <a href="{up}releases.html">All releases</a></div>'
        f"{BANNER_END}"
    )


def stamp(page: Path, release: str, newest: str, depth: int) -> None:
    """Put the release banner right after ``<body ...>`` (replacing an earlier one)."""
    text = page.read_text(encoding="utf-8")
    text = re.sub(re.escape(BANNER_START) + ".*?" + re.escape(BANNER_END), "", text, flags=re.S)
    head_end = text.lower().find("</head>")  # the body tag after the head, not one named in a comment
    body = re.compile(r"<body\b[^>]*>", flags=re.I).search(text, max(head_end, 0))
    if body is None:  # not a page of the book (a fragment): left alone
        return
    text = text[: body.end()] + banner(release, newest, depth) + text[body.end() :]
    page.write_text(text, encoding="utf-8")


def stamp_release(folder: Path, release: str, newest: str) -> int:
    """Stamp every page of the release copied to ``folder``; return how many were stamped."""
    count = 0
    for page in sorted(folder.rglob("*.html")):
        relative = page.relative_to(folder)
        if SKIPPED_FOLDERS & set(relative.parts[:-1]):
            continue
        stamp(page, release, newest, depth=len(relative.parts))  # the release folder counts too
        count += 1
    return count


def release_list(all_releases: list[str]) -> str:
    """The releases as an HTML list, newest first."""
    newest = all_releases[0]
    return "\n".join(
        f'    <li><a href="{name}/index.html">{name}</a>{" (newest)" if name == newest else ""}</li>'
        for name in all_releases
    )


def releases_page(all_releases: list[str]) -> str:
    """The page that lists every release (the banners' "All releases")."""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Anomaly detection and adversarial robustness: releases</title>
</head>
<body>
  <p>Every release of the course, newest first:</p>
  <ul>
{release_list(all_releases)}
  </ul>
</body>
</html>
"""


def index_page(all_releases: list[str]) -> str:
    """The site's root page: it sends the reader to the newest release (and lists them all,
    for a browser that follows no redirect)."""
    target = html.escape(f"{all_releases[0]}/index.html")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Anomaly detection and adversarial robustness</title>
  <meta http-equiv="refresh" content="0; url={target}">
  <link rel="canonical" href="{target}">
  <script>window.location.replace("{target}" + window.location.hash);</script>
</head>
<body>
  <p>The newest release of the course is <a href="{target}">{all_releases[0]}</a>. Every release:</p>
  <ul>
{release_list(all_releases)}
  </ul>
</body>
</html>
"""


def lay_out(built: Path, release: str, site: Path) -> list[str]:
    """Add the built book ``built`` to ``site`` as ``release`` and rewrite what depends on
    the newest release; return the releases, newest first."""
    release_key(release)  # refuses anything but a release tag (no '..', no '/')
    if not (built / "index.html").is_file():
        raise FileNotFoundError(f"{built} holds no index.html: build the book first (make book)")
    site.mkdir(parents=True, exist_ok=True)
    target = site / release
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(built, target)
    (target / ".buildinfo").unlink(missing_ok=True)  # Sphinx's own bookkeeping, not a page
    all_releases = releases(site)
    newest = all_releases[0]
    for name in all_releases:
        stamp_release(site / name, name, newest)
    if (site / LATEST).exists():
        shutil.rmtree(site / LATEST)
    shutil.copytree(site / newest, site / LATEST)
    stamp_release(site / LATEST, newest, newest)
    (site / "index.html").write_text(index_page(all_releases), encoding="utf-8")
    (site / "releases.html").write_text(releases_page(all_releases), encoding="utf-8")
    (site / "releases.json").write_text(json.dumps({"newest": newest, "releases": all_releases}, indent=2) + "\n")
    (site / ".nojekyll").write_text("")
    return all_releases


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("built", type=Path, help="the built book, e.g. _build/html")
    parser.add_argument("release", help="its release tag, e.g. v0.1.0")
    parser.add_argument("site", type=Path, help="the site's folder, holding the earlier releases (if any)")
    args = parser.parse_args(argv)
    all_releases = lay_out(args.built, args.release, args.site)
    print(f"{args.site}: releases {', '.join(all_releases)}; newest {all_releases[0]} (also at {LATEST}/)")


if __name__ == "__main__":
    main()
