#!/usr/bin/env python
"""Pin every notebook to one release of the course: what its install cell installs
and where its "Open in Colab" badge opens it.

A notebook opened on Colab installs the package with its first cell. Unpinned,
that is whatever the repository's default branch holds that day, which need not
be the code the notebook was written for. Pinned, the notebook and the package
come from the same release: the badge opens the notebook at that release, and
its install cell installs the package from it.

    python scripts/pin_release.py                # the release: "v" + the version in pyproject.toml
    python scripts/pin_release.py --ref my-branch --repository https://github.com/me/my-fork

It rewrites, in every notebook under lectures/ and exercises/, the install
cell's ``git+URL@REF`` and the badge's ``github/OWNER/NAME/blob/REF/``, and the
``branch`` of ``_config.yml`` (the book's launch buttons); the repository URL is
``_config.yml``'s ``repository.url`` unless ``--repository`` gives another, which
is then written there too. tests/test_notebooks.py checks that every notebook is
pinned to the release of pyproject.toml.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ["lectures/*.ipynb", "exercises/*.ipynb", "exercises/solutions/*.ipynb"]
CONFIG = ROOT / "_config.yml"
# The install cell's requirement, and the badge's link up to the notebook's path.
INSTALL = re.compile(
    r"anomaly-edu @ git\+(?P<url>https://github\.com/[\w.-]+/[\w.-]+?)(?:@(?P<ref>[\w./-]+))?(?=\\?\")"
)
BADGE = re.compile(r"colab\.research\.google\.com/github/(?P<repository>[\w.-]+/[\w.-]+)/blob/(?P<ref>[\w.-]+)/")
CONFIG_URL = re.compile(r"^(?P<key>\s+url:\s*)(?P<value>\S+)\s*$", re.MULTILINE)
CONFIG_BRANCH = re.compile(r"^(?P<key>\s+branch:\s*)(?P<value>\S+)\s*$", re.MULTILINE)


def release() -> str:
    """The course's release: "v" and the version of pyproject.toml."""
    return "v" + tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def repository_url() -> str:
    """The repository URL of _config.yml (the one place it is set)."""
    return CONFIG_URL.search(CONFIG.read_text())["value"].rstrip("/")


def notebooks() -> list[Path]:
    return sorted(path for pattern in NOTEBOOKS for path in ROOT.glob(pattern))


def pins(text: str) -> set[tuple[str, str | None]]:
    """The (repository URL, ref) pairs a notebook's text installs from or links to."""
    installs = {(m["url"], m["ref"]) for m in INSTALL.finditer(text)}
    badges = {(f"https://github.com/{m['repository']}", m["ref"]) for m in BADGE.finditer(text)}
    return installs | badges


def pin_text(text: str, url: str, ref: str) -> str:
    repository = url.removeprefix("https://github.com/")
    text = INSTALL.sub(f"anomaly-edu @ git+{url}@{ref}", text)
    return BADGE.sub(f"colab.research.google.com/github/{repository}/blob/{ref}/", text)


def pin(ref: str, url: str) -> list[Path]:
    """Pin every notebook and _config.yml to ``ref`` of ``url``; the files changed."""
    changed = []
    for path in [*notebooks(), CONFIG]:
        text = path.read_text(encoding="utf-8")
        if path == CONFIG:
            new = CONFIG_URL.sub(lambda m: m["key"] + url, text, count=1)
            new = CONFIG_BRANCH.sub(lambda m: m["key"] + ref, new, count=1)
        else:
            new = pin_text(text, url, ref)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(path.relative_to(ROOT))
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pin_release.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", default=None, help="tag, branch or commit (default: the release of pyproject.toml)")
    parser.add_argument("--repository", default=None, help="GitHub URL (default: repository.url of _config.yml)")
    args = parser.parse_args(argv)
    url = (args.repository or repository_url()).rstrip("/")
    if not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url):
        print(f"error: {url!r} is not a GitHub repository URL (https://github.com/OWNER/NAME)")
        return 1
    ref = args.ref or release()
    changed = pin(ref, url)
    print(f"pinned to {url}@{ref}: {len(changed)} files changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
