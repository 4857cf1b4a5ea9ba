"""Downloads that survive a dead mirror: anomaly_edu.data.archive.download_from_mirrors and
MVTec AD's download through it, against small files served on 127.0.0.1.

Each test starts an HTTP server in a thread on a free local port, serving a folder of
tmp_path; a "dead" mirror is a port where nothing listens (the connection is refused at
once) or an address the server answers with 404. Nothing here reaches the internet.
"""

import functools
import hashlib
import http.server
import socket
import threading
from pathlib import Path

import pytest
from test_mvtec import archive_of, make_mvtec_tree

from anomaly_edu.data import CorruptDataError, DatasetNotFoundError
from anomaly_edu.data.archive import DownloadError, download_from_mirrors
from anomaly_edu.data.mvtec import (
    MVTEC_ARCHIVE,
    MVTEC_FOLDER,
    MVTEC_URL,
    MVTEC_URL_ENV_VAR,
    available_mvtec,
    download_mvtec,
    load_mvtec,
    mvtec_mirrors,
)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass


@pytest.fixture
def served(tmp_path):
    """(folder, base URL): the files put into ``folder`` are served at ``base URL + name``."""
    folder = tmp_path / "served"
    folder.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=folder))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def dead_url():
    """An address on a local port where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/{MVTEC_ARCHIVE}"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------ one file, several mirrors


def test_the_first_mirror_is_dead_the_second_serves_the_file(served, dead_url, tmp_path):
    folder, base = served
    (folder / "data.bin").write_bytes(b"the data set" * 1000)
    target = tmp_path / "root" / "data.bin"
    got = download_from_mirrors("tiny", [dead_url, base + "data.bin"], sha256(folder / "data.bin"), target, False)
    assert got == target and target.read_bytes() == (folder / "data.bin").read_bytes()
    assert not target.with_name("data.bin.part").exists()


def test_a_mirror_that_serves_another_file_is_passed_over(served, tmp_path):
    folder, base = served
    (folder / "old.bin").write_bytes(b"an older release")
    (folder / "data.bin").write_bytes(b"the data set")
    target = tmp_path / "data.bin"
    download_from_mirrors("tiny", [base + "old.bin", base + "data.bin"], sha256(folder / "data.bin"), target, False)
    assert target.read_bytes() == b"the data set"


def test_when_every_mirror_fails_one_error_names_the_set_each_address_and_where_to_put_a_copy(
    served, dead_url, tmp_path
):
    folder, base = served
    (folder / "other.bin").write_bytes(b"not it")
    urls = [dead_url, base + "missing.bin", base + "other.bin"]
    expected = hashlib.sha256(b"the data set").hexdigest()
    target = tmp_path / "root" / "data.bin"
    with pytest.raises(DownloadError) as err:
        download_from_mirrors("Tiny set", urls, expected, target, False, where_else="from its owners' page")
    message = str(err.value)
    assert isinstance(err.value, DatasetNotFoundError)
    assert message.startswith("Tiny set could not be downloaded")
    for url in urls:
        assert url in message
    assert "Connection refused" in message or "URLError" in message  # the dead port
    assert "404" in message  # the address the server does not have
    assert sha256(folder / "other.bin") in message  # the file that was not the one expected
    assert f"put it at {target}" in message and expected in message and "from its owners' page" in message
    assert not target.exists() and not target.with_name("data.bin.part").exists()


def test_a_copy_put_where_the_error_says_is_found_without_any_download(dead_url, tmp_path):
    target = tmp_path / "root" / "data.bin"
    expected = hashlib.sha256(b"the data set").hexdigest()
    with pytest.raises(DownloadError):
        download_from_mirrors("tiny", [dead_url], expected, target, False)
    target.write_bytes(b"the data set")  # by hand
    assert download_from_mirrors("tiny", [dead_url], expected, target, False) == target
    target.write_bytes(b"a damaged copy")
    with pytest.raises(CorruptDataError, match="the checksum of .*data.bin is wrong"):
        download_from_mirrors("tiny", [dead_url], expected, target, False)


def test_no_address_at_all_still_says_where_to_put_a_copy(tmp_path):
    with pytest.raises(DownloadError, match=r"(?s)no address to download it from was given.*put it at "):
        download_from_mirrors("tiny", [], "ab" * 32, tmp_path / "data.bin", False)


# ------------------------------------------------------------------ MVTec AD


def test_mvtec_tries_the_environment_variables_addresses_first_then_its_own(monkeypatch):
    monkeypatch.delenv(MVTEC_URL_ENV_VAR, raising=False)
    assert mvtec_mirrors() == [MVTEC_URL]
    monkeypatch.setenv(MVTEC_URL_ENV_VAR, "http://a/x.tar.xz http://b/x.tar.xz")
    assert mvtec_mirrors() == ["http://a/x.tar.xz", "http://b/x.tar.xz", MVTEC_URL]
    assert mvtec_mirrors("http://c/x") == ["http://c/x"]  # the caller's choice, alone
    assert mvtec_mirrors(["http://c/x", "http://d/x"]) == ["http://c/x", "http://d/x"]


def test_mvtec_downloads_from_the_second_mirror_and_loads(served, dead_url, tmp_path, monkeypatch):
    folder, base = served
    archive = archive_of(make_mvtec_tree(tmp_path / "src", nested=False), folder / MVTEC_ARCHIVE)
    monkeypatch.setenv(MVTEC_URL_ENV_VAR, f"{dead_url} {base}{MVTEC_ARCHIVE}")
    root = tmp_path / "data"
    assert download_mvtec(root, sha256=sha256(archive), progress=False) == root / MVTEC_FOLDER
    assert load_mvtec("carpet", root=root, size=16).test.shape == (6, 3, 16, 16)


def test_mvtec_when_all_fail_then_the_archive_put_by_hand_is_found(served, dead_url, tmp_path):
    folder, base = served
    archive = archive_of(make_mvtec_tree(tmp_path / "src", nested=False), tmp_path / MVTEC_ARCHIVE)
    root = tmp_path / "data"
    urls = [dead_url, base + MVTEC_ARCHIVE]  # the server has no archive: 404
    with pytest.raises(DownloadError) as err:
        download_mvtec(root, url=urls, sha256=sha256(archive), progress=False)
    message = str(err.value)
    assert message.startswith("MVTec AD could not be downloaded") and all(url in message for url in urls)
    assert f"put it at {root / MVTEC_ARCHIVE}" in message and MVTEC_URL_ENV_VAR in message
    assert not available_mvtec(root)["carpet"]

    (root / MVTEC_ARCHIVE).write_bytes(archive.read_bytes())  # the reader follows the message
    assert download_mvtec(root, url=urls, sha256=sha256(archive), progress=False) == root / MVTEC_FOLDER
    assert load_mvtec("bottle", root=root, size=16).train.shape[1:] == (3, 16, 16)


def test_the_command_line_shows_the_whole_error_on_its_one_line(dead_url, tmp_path, capsys):
    from anomaly_edu.experiments.cli import main

    root = tmp_path / "data"
    assert main(["data", "--data-root", str(root), "--download", "mvtec", "--mvtec-url", dead_url]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: MVTec AD could not be downloaded") and len(error.strip().splitlines()) == 1
    assert dead_url in error and f"put it at {root / MVTEC_ARCHIVE}" in error
