"""The course as people get it: its licences, the data's licences, how to cite it, how to report an error.

The licence files say what they cover; the book's data-licence page agrees with the
package's list (``anomaly_edu.data.licences``) and every stored model names its
data's licence; CITATION.cff is valid CFF 1.2.0 and agrees with pyproject.toml and
the README's BibTeX; the errata form asks for the release, the page and the cell.
"""

import fnmatch
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from anomaly_edu.data.licences import DATA_LICENCES, NO_LICENCE_STATED, data_licence

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "book" / "data_licences.md"


# ------------------------------------------------------------------ the course's licences


def test_the_code_is_mit_and_the_content_cc_by_4():
    code = (ROOT / "LICENSE").read_text()
    assert code.startswith("MIT License") and "Copyright (c) 2026 The anomaly-edu authors" in code
    content = (ROOT / "LICENSE-content").read_text()
    assert "Creative Commons Attribution 4.0 International" in content
    assert "https://creativecommons.org/licenses/by/4.0/legalcode" in content
    for covered in ("book/*.md", "lectures/", "exercises/", "LICENSE", "book/data_licences.md"):
        assert covered in content, f"LICENSE-content does not say what it covers: {covered}"


def test_the_book_says_2026_and_the_readme_which_licence_covers_what():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["copyright"] == "2026, The anomaly-edu authors"
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Licences") :]
    for word in ("MIT", "CC BY 4.0", "`LICENSE`", "`LICENSE-content`", "book/data_licences.md"):
        assert word in section


# ------------------------------------------------------------------ the data's licences


def table_rows(markdown: str) -> list[list[str]]:
    """The cells of every row of the Markdown tables in ``markdown`` (not their header rules)."""
    rows = [line.strip().strip("|").split(" | ") for line in markdown.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row] for row in rows if not set(row[0]) <= {"-", " "}]


def test_the_page_lists_every_data_set_with_its_source_and_licence_as_the_package_does():
    rows = {row[0]: row for row in table_rows(PAGE.read_text())}
    for name, entry in DATA_LICENCES.items():
        assert entry.title in rows, f"{name}: no row {entry.title!r} in {PAGE.name}"
        _, source, licence = rows[entry.title]
        assert licence.startswith(entry.licence), f"{name}: the page says {licence!r}, the package {entry.licence!r}"
        assert re.search(r"https?://\S+", entry.source).group(0) in source
        if entry.licence_url:
            assert entry.licence_url in licence


def test_every_stored_results_file_has_a_row_with_its_data_licence():
    patterns = []
    for row in table_rows(PAGE.read_text()):
        if len(row) == 3 and "results/" in row[0]:
            patterns += [name.removeprefix("results/") for name in re.findall(r"`([^`]+)`", row[0])]
    uncovered = [
        path.name
        for path in sorted((ROOT / "results").glob("*.json"))
        if not any(fnmatch.fnmatch(path.name, p if p.endswith(".json") else p + "*") for p in patterns)
    ]
    assert not uncovered, f"{PAGE.name} names no data licence for results/{uncovered}: add them to its table"


def test_the_licences_the_course_is_sure_of_and_the_ones_it_is_not():
    assert DATA_LICENCES["mvtec"].licence == "CC BY-NC-SA 4.0"
    assert DATA_LICENCES["mnist"].licence == "CC BY-SA 3.0"
    assert DATA_LICENCES["fashion-mnist"].licence == "MIT"
    for unclear in ("cifar10", "head-ct", "brain-mri", "magnetic-tile", "coil100"):
        assert DATA_LICENCES[unclear].licence == NO_LICENCE_STATED


def test_data_licence_names_the_data_set_its_licence_and_source_and_refuses_an_unknown_one():
    line = data_licence("MVTEC")
    assert line.startswith("MVTec AD: CC BY-NC-SA 4.0 (https://creativecommons.org/licenses/by-nc-sa/4.0/)")
    assert "mvtec.com" in line
    assert data_licence("head_ct").startswith(f"Head CT - hemorrhage: {NO_LICENCE_STATED}; source: ")
    with pytest.raises(ValueError, match="no licence recorded for the data set 'imagenet'"):
        data_licence("imagenet")


def test_every_stored_model_names_the_licence_of_its_data():
    models = json.loads((ROOT / "models" / "manifest.json").read_text())["models"]
    page = PAGE.read_text()
    for name, entry in models.items():
        where = entry.get("data") or {"dataset": "mnist"}  # the classifiers: MNIST's training set
        assert entry["data_licence"] == data_licence(where.get("dataset") or where["case"]), name
        assert f"`{name}`" in page, f"the page does not say which licence applies to the model {name}"


# ------------------------------------------------------------------ citing the course


def pyproject_version() -> str:
    return re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)


def repository_url() -> str:
    return yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]


def test_citation_cff_is_cff_1_2_0_and_names_this_release_and_repository():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    for key in ("message", "title", "authors"):  # the keys CFF 1.2.0 requires
        assert cff.get(key), f"CITATION.cff has no {key}"
    assert all(author.get("name") or author.get("family-names") for author in cff["authors"])
    assert cff["type"] == "software"
    assert str(cff["version"]) == pyproject_version(), "raise CITATION.cff's version with pyproject.toml's"
    assert cff["repository-code"] == repository_url()
    assert cff["license"] == ["MIT", "CC-BY-4.0"]  # SPDX identifiers of LICENSE and LICENSE-content


def test_citation_cff_passes_cffconvert_where_it_is_installed():
    """cffconvert checks the file against CFF 1.2.0's JSON schema. It is not in
    requirements-ci.txt: its 2.0.0 pins jsonschema<4, older than nbformat needs, so
    it lives in an environment of its own (``python -m venv /tmp/cff && /tmp/cff/bin/pip
    install cffconvert``); point $CFFCONVERT at it, or put it on the PATH."""
    command = os.environ.get("CFFCONVERT") or shutil.which("cffconvert")
    if not command:
        pytest.skip("cffconvert is not installed (set CFFCONVERT=/path/to/cffconvert)")
    result = subprocess.run(
        [command, "--validate", "-i", str(ROOT / "CITATION.cff")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid according to schema version 1.2.0" in result.stdout


def test_the_readme_gives_a_bibtex_entry_of_this_release():
    readme = (ROOT / "README.md").read_text()
    entry = re.search(r"```bibtex\n(@\w+\{.*?\n\})\n```", readme, re.S)
    assert entry, "no ```bibtex block in the README"
    fields = dict(re.findall(r"^\s+(\w+)\s*=\s*\{(.*)\},?$", entry.group(1), re.M))
    assert fields["version"] == pyproject_version()
    assert fields["url"] == repository_url()
    assert fields["author"] == "{The anomaly-edu authors}"  # double braces: one author, not four names


# ------------------------------------------------------------------ reporting an error


def test_the_errata_form_asks_for_the_release_the_page_and_the_cell():
    form = yaml.safe_load((ROOT / ".github" / "ISSUE_TEMPLATE" / "errata.yml").read_text())
    assert form["name"] and form["description"] and form["body"]
    fields = {item["id"]: item for item in form["body"] if "id" in item}
    for needed in ("release", "page", "cell", "wrong"):
        assert fields[needed]["validations"]["required"] is True, needed
    assert all(item["type"] in {"markdown", "input", "textarea", "dropdown", "checkboxes"} for item in form["body"])


def test_every_page_of_the_book_has_an_issue_button():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["html"]["use_issues_button"] is True
    assert config["repository"]["url"].startswith("https://github.com/")  # where the button opens an issue
