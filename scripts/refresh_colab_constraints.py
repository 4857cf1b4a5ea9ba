"""Refresh tests/colab_constraints.txt from the versions in Colab's runtime image.

    docker run --rm us-docker.pkg.dev/colab-images/public/runtime python3 -m pip list --format=freeze > colab.txt
    python scripts/refresh_colab_constraints.py colab.txt            # rewrites the file, says what changed
    python scripts/refresh_colab_constraints.py colab.txt --dry-run  # only says what changed

The input is the output of ``pip list --format=freeze`` (or ``pip freeze``) in Colab's
image. Only the packages the file already pins are touched: each gets the image's version,
and its comment stays. The rest of the file (its comments, its order) stays as it is. A
pinned package that the image does not have (papermill, jedi, overrides: "not on Colab") is
kept as it is, and said so.

The file pins CPU builds of torch and torchvision (``2.11.0+cpu``) where Colab's image may
have a CUDA build (``2.11.0+cu126``): versions are compared without their local label (the
part after ``+``), and a new version keeps the file's label. The weekly workflow
.github/workflows/colab-image.yml runs this with ``--dry-run`` to say, in the issue it opens
when the course fails in Colab's image, which versions changed.
"""

from __future__ import annotations

import argparse
import re
import sys
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "tests" / "colab_constraints.txt"
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s#]+)(?P<rest>\s*(#.*)?)$")
DIRECT = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*@\s*(?P<url>\S+)")


@dataclass
class Change:
    """One pinned package whose version differs in the image."""

    name: str
    old: str
    new: str

    def __str__(self) -> str:
        return f"{self.name}: {self.old} -> {self.new}"


def canonical(name: str) -> str:
    """A package's name as pip compares names: PyYAML, pyyaml and py_yaml are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def public(version: str) -> str:
    """A version without its local label: 2.11.0+cu126 -> 2.11.0."""
    return version.split("+")[0]


def version_in_url(name: str, url: str) -> str | None:
    """The version in a wheel's file name, for ``pip freeze``'s ``name @ URL`` lines
    (Colab installs torch so): .../torch-2.11.0%2Bcpu-cp313-...whl -> 2.11.0+cpu."""
    parts = urllib.parse.unquote(url.rsplit("/", 1)[-1]).split("-")
    return parts[1] if len(parts) >= 3 and canonical(parts[0]) == canonical(name) else None


def read_freeze(text: str) -> dict[str, str]:
    """{canonical name: version} from ``pip list --format=freeze`` or ``pip freeze`` output.
    Lines it cannot read (editable installs, options, comments) are skipped."""
    versions = {}
    for line in text.splitlines():
        line = line.strip()
        pin, direct = PIN.match(line), DIRECT.match(line)
        if pin:
            versions[canonical(pin["name"])] = pin["version"]
        elif direct and (found := version_in_url(direct["name"], direct["url"])):
            versions[canonical(direct["name"])] = found
    return versions


def refresh(constraints: str, freeze: str) -> tuple[str, list[Change], list[str]]:
    """The constraints file ``constraints`` with each pin set to the image's version.

    Returns the new text, the changes, and the pinned packages the image does not have
    (kept as they are)."""
    image = read_freeze(freeze)
    lines, changes, missing = [], [], []
    for line in constraints.splitlines(keepends=True):
        pin = PIN.match(line.rstrip("\n"))
        if pin is None:  # a comment or a blank line
            lines.append(line)
            continue
        name, old = pin["name"], pin["version"]
        new = image.get(canonical(name))
        if new is None:
            missing.append(name)
        elif public(new) != public(old):
            label = old[len(public(old)) :]  # "+cpu", or ""
            new = public(new) + label
            changes.append(Change(name, old, new))
            line = f"{name}=={new}{pin['rest']}" + ("\n" if line.endswith("\n") else "")
        lines.append(line)
    return "".join(lines), changes, missing


def report(changes: list[Change], missing: list[str]) -> str:
    """What changed, as a Markdown list (the weekly workflow puts it in its issue)."""
    if changes:
        lines = ["Versions in Colab's image that differ from tests/colab_constraints.txt:", ""]
        lines += [f"- {change}" for change in changes]
    else:
        lines = ["Every version that tests/colab_constraints.txt pins is the one in Colab's image."]
    if missing:
        lines += ["", f"Pinned but not in the image (kept as they are): {', '.join(missing)}."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("freeze", type=Path, help="`pip list --format=freeze` (or `pip freeze`) of Colab's image")
    parser.add_argument("--constraints", type=Path, default=CONSTRAINTS, help="the file to refresh")
    parser.add_argument("--dry-run", action="store_true", help="say what would change; write nothing")
    args = parser.parse_args(argv)
    freeze = args.freeze.read_text()
    if not read_freeze(freeze):
        print(f"{args.freeze} lists no package as name==version: is it pip's output?", file=sys.stderr)
        return 1
    text, changes, missing = refresh(args.constraints.read_text(), freeze)
    print(report(changes, missing))
    if changes and not args.dry_run:
        args.constraints.write_text(text)
        print(f"\nwrote {args.constraints}: run tests/test_colab_alone.py, and update its header's source line")
    return 0


if __name__ == "__main__":
    sys.exit(main())
