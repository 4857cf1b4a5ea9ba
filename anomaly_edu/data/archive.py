"""Files fetched from elsewhere: download with a progress bar from the first of
several mirrors that serves the right file, check a SHA-256, and unpack a tar
archive without letting it write outside its folder.

Lecture 6 (MVTec AD is the first data set the course downloads as an archive);
any later data set that comes as an archive uses the same steps:
:func:`download_from_mirrors`, then :func:`safe_extract`.
"""

from __future__ import annotations

__lecture__ = 6

import hashlib
import http.client
import lzma
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath

from . import CorruptDataError, DatasetNotFoundError


class UnsafeArchiveError(ValueError):
    """An archive holds a member that would be written outside the target folder, or a link."""


class DownloadError(DatasetNotFoundError):
    """No mirror served a data set's file with the expected SHA-256; the message says where
    to put a copy by hand."""


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file, as 64 lower-case hex digits, read in 1 MiB blocks. Lecture 6."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_sha256(sha256: str) -> str:
    value = str(sha256).strip().lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}")
    return value


def verify_checksum(path: str | os.PathLike, sha256: str) -> str:
    """Check that the file ``path`` has the SHA-256 ``sha256``; return it.

    A mismatch raises :class:`CorruptDataError` naming the file, the expected and
    the actual hash. Nothing is deleted: the message says what to do. Lecture 6.
    """
    expected = check_sha256(sha256)
    path = Path(path)
    actual = file_sha256(path)
    if actual != expected:
        raise CorruptDataError(
            f"the checksum of {path} is wrong: SHA-256 expected {expected}, actual {actual}. The download is "
            f"incomplete or is not the file expected. Nothing was deleted: delete {path} and download again; if "
            f"its publisher has replaced the file, pass the checksum it now publishes."
        )
    return actual


def _escapes(name: str) -> bool:
    """Whether the archive path ``name`` is absolute or climbs out of its folder."""
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute() or PureWindowsPath(name).drive:
        return True
    return ".." in PurePosixPath(name.replace("\\", "/")).parts


def _check_member(member: tarfile.TarInfo, archive: Path, target: Path) -> None:
    """Refuse a member that would land outside ``target``, a link, or a special file."""
    where = f"the archive {archive} holds the member {member.name!r}"
    if _escapes(member.name):
        raise UnsafeArchiveError(
            f"{where}, whose path is absolute or climbs with '..', so it could land outside {target}; nothing was "
            f"extracted"
        )
    if member.issym() or member.islnk():
        kind = "a symbolic link" if member.issym() else "a hard link"
        # a symbolic link is relative to its own folder, a hard link to the archive's top
        start = PurePosixPath(member.name).parent if member.issym() else PurePosixPath(".")
        lands = os.path.normpath((start / member.linkname).as_posix())
        if _escapes(member.linkname) or lands == ".." or lands.startswith("../"):
            raise UnsafeArchiveError(
                f"{where}, {kind} to {member.linkname!r}, which points outside {target}; nothing was extracted"
            )
        raise UnsafeArchiveError(
            f"{where}, {kind} to {member.linkname!r}; only plain files and folders are extracted (MVTec AD's "
            f"archive has no links); nothing was extracted"
        )
    if not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(
            f"{where}, which is a device, a pipe or another special file; only plain files and folders are "
            f"extracted; nothing was extracted"
        )


def _check_unique(members: list[tarfile.TarInfo], archive: Path) -> None:
    """Refuse an archive that holds the same path twice: tar lets the last copy win, silently.

    MVTec AD's archive, made by tar from a folder, holds each path once."""
    seen = set()
    for member in members:
        name = PurePosixPath(member.name).as_posix()  # 'a//b' and './a/b' are both 'a/b'
        if name in seen:
            raise UnsafeArchiveError(
                f"the archive {archive} holds the member {member.name!r} twice, so which copy is extracted is "
                f"ambiguous; nothing was extracted"
            )
        seen.add(name)


def _check_end(tar: tarfile.TarFile) -> None:
    """Raise ReadError unless only zeros, at least one block of them, follow the last member.

    tarfile stops quietly at a header it cannot read, in a compressed stream as
    in a plain file, so an archive cut between two members, or with a damaged
    header, would pass for a shorter one. A tar ends with blocks of zeros (padded
    with zeros to its record size), so the (decompressed) stream is read from the
    end of the last member to its very end: anything but zeros there, a damaged
    header or appended data, is refused, and the decompressor checks its own end
    (a cut .xz fails here). Called after extraction, when the stream has been read
    up to the last member: seeking back in a compressed stream decompresses it again."""
    end = tar.offset  # the end of the last member: where tarfile found no further one
    tar.fileobj.seek(end)
    size = 0
    for block in iter(lambda: tar.fileobj.read(1 << 20), b""):
        if block.strip(b"\0"):
            at = end + size + len(block) - len(block.lstrip(b"\0"))
            raise tarfile.ReadError(f"a damaged header or other data after its last member, at byte {at}")
        size += len(block)
    if size < tarfile.BLOCKSIZE:
        raise tarfile.ReadError(f"no end-of-archive block after its last member, at byte {end}: it is cut short")


_CORRUPT = (tarfile.ReadError, tarfile.CompressionError, EOFError, lzma.LZMAError, zlib.error)


def _corrupt(err: Exception) -> bool:
    """Whether ``err`` says the archive's bytes are bad: a tar or decompression error, or an
    OSError without an error number (gzip and bz2 raise those for bad data; the file
    system's errors, a full disk say, carry one)."""
    return isinstance(err, _CORRUPT) or (isinstance(err, OSError) and err.errno is None)


def safe_extract(archive: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Extract a tar archive (plain, .gz, .bz2 or .xz) into the folder ``target``; return it.

    Safe: every member is read and checked first, and the archive is refused,
    with :class:`UnsafeArchiveError` naming the member and before anything is
    written, when a member's path is absolute or climbs out with ``..``, the
    member is a link (symbolic or hard; one pointing outside is named as such)
    or a special file, or the archive holds the same path twice (tar would let
    the last copy win). A truncated or corrupt archive raises
    :class:`CorruptDataError` naming it: a decompression error, a damaged
    header, or anything but zeros after the last member up to the end of the
    (decompressed) stream; zeros there are the tar's normal end and padding.
    Extraction goes to a temporary folder next to ``target`` and moves into
    place only when all of it succeeded, so nothing is ever half-extracted (a
    corrupt archive leaves nothing behind); an existing ``target`` keeps its content
    and receives the archive's top-level entries, refused with
    :class:`FileExistsError` (before any is moved) when one already exists.
    Python's ``filter="data"`` is used as well where it exists (3.11.4+). Lecture 6.
    """
    archive, target = Path(archive), Path(target)
    if not archive.is_file():
        raise FileNotFoundError(f"no archive {archive}")
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()  # reads every header, up to the first it cannot read
            if not members:
                raise tarfile.ReadError("it holds no files")
            for member in members:
                _check_member(member, archive, target)
            _check_unique(members, archive)
            target.parent.mkdir(parents=True, exist_ok=True)
            scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".extracting", dir=target.parent))
            try:
                options = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                tar.extractall(scratch, members=members, **options)
                _check_end(tar)
            except BaseException:
                shutil.rmtree(scratch, ignore_errors=True)
                raise
    except Exception as err:
        if not _corrupt(err):
            raise
        raise CorruptDataError(
            f"the archive {archive} is truncated or corrupt ({type(err).__name__}: {err}); nothing was extracted. "
            f"Delete it and download it again."
        ) from None
    try:
        _move_into(scratch, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def _move_into(scratch: Path, target: Path) -> None:
    """Move the extracted folder into place: rename it, or move its entries into an existing target."""
    if not target.exists():
        os.replace(scratch, target)
        return
    if not target.is_dir():
        raise NotADirectoryError(f"cannot extract into {target}: it is a file, not a folder")
    entries = sorted(scratch.iterdir())
    clashes = [entry.name for entry in entries if (target / entry.name).exists()]
    if clashes:
        raise FileExistsError(
            f"cannot extract into {target}: it already holds {', '.join(clashes[:5])}"
            f"{' ...' if len(clashes) > 5 else ''}; nothing was changed. Delete these (or the folder) to "
            f"extract again, or extract elsewhere."
        )
    for entry in entries:
        os.replace(entry, target / entry.name)


def fetch(url: str, part: Path, progress: bool = True) -> None:
    """Download ``url`` to the file ``part``, with a progress bar named after it. Lecture 6."""
    from tqdm.auto import tqdm

    with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as out:
        total = response.headers.get("Content-Length")
        with tqdm(
            total=int(total) if total else None,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=part.name.removesuffix(".part"),
            disable=not progress,
        ) as bar:
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
                bar.update(len(block))


# the errors of one failed attempt: no connection, an HTTP error, a cut transfer, a bad address
_DOWNLOAD_ERRORS = (urllib.error.URLError, http.client.HTTPException, OSError, ValueError)


def download_from_mirrors(
    name: str,
    urls: Sequence[str],
    sha256: str,
    destination: str | os.PathLike,
    progress: bool = True,
    where_else: str = "",
) -> Path:
    """Make sure the file ``destination`` exists with the SHA-256 ``sha256``; return its path.

    A file already at ``destination`` (an earlier download, or a copy put there
    by hand) is checked and used: a wrong checksum raises
    :class:`CorruptDataError`. Otherwise each address of ``urls`` is tried in
    turn: the file is downloaded to ``destination`` + ``.part``, its SHA-256
    is checked, and only a file with the right one is renamed to
    ``destination``. An address that fails (no connection, an HTTP error, a
    wrong checksum) is noted and the next one tried. When all fail, the
    ``.part`` file is removed and :class:`DownloadError` names the data set
    ``name``, every address tried with its reason, and where to put a copy by
    hand (``destination``; ``where_else`` may add where to get one), so that
    the next call finds it. Lecture 6.
    """
    sha256 = check_sha256(sha256)
    destination = Path(destination)
    if destination.is_file():
        verify_checksum(destination, sha256)
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    part = destination.with_name(destination.name + ".part")
    failures = []
    for url in urls:
        try:
            fetch(url, part, progress)
        except _DOWNLOAD_ERRORS as err:
            failures.append(f"{url} ({type(err).__name__}: {err})")
            continue
        actual = file_sha256(part)
        if actual == sha256:
            os.replace(part, destination)
            return destination
        failures.append(f"{url} (served a file whose SHA-256 is {actual}, not {sha256})")
    part.unlink(missing_ok=True)
    raise DownloadError(_all_failed(name, failures, sha256, destination, where_else))


def _all_failed(name: str, failures: list[str], sha256: str, destination: Path, where_else: str) -> str:
    """The message of :class:`DownloadError`, on one line (the command line shows the first line of an
    error): what failed, and how to go on by hand."""
    if failures:
        why = f"every address failed, and nothing was kept. Tried: {'; '.join(failures)}."
    else:
        why = "no address to download it from was given."
    return (
        f"{name} could not be downloaded: {why} "
        f"Download {destination.name} by hand{f' ({where_else})' if where_else else ''} and put it at "
        f"{destination}; it is used from there once its SHA-256 is {sha256}."
    )
