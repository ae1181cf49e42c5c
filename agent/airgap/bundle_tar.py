"""Read a bundle's tar file safely: open it, then walk its raw headers before `tarfile` does.

`tarfile` trusts the archive: it reads a metadata header (pax `x`, Solaris pax `X`, pax global
`g`, GNU long name `L` and long link `K`) into memory whole, whatever size it declares; reads
the extension blocks of a GNU sparse member (`S`) one after another; recurses once per metadata
header in front of a member; keeps one TarInfo per member; and seeks to wherever a header says
the next one starts. `scan_headers` checks all of that first, with the same parser `tarfile`
uses for each header block (`TarInfo.frombuf`), and allows only what a genuine bundle holds:

- members: regular files (`0`, or `\\0` from old writers); every other type is refused;
- in front of a member, at most one pax header (`x` or `X`), one `L` and one `K`, each at most
  `MAX_METADATA_BYTES`, all of them together at most `MAX_METADATA_TOTAL_BYTES`; pax records
  well formed, no sparse keywords (`GNU.sparse.*`); a pax global header is refused (`tarfile`
  copies it into every later member, and no bundle has one);
- every declared size (a header's, or a pax `size=`) ends inside the file;
- a damaged header (bad checksum, a number field that is none) is refused: mid-archive,
  `tarfile` would take it silently for the end;
- at most `MAX_MEMBERS` members.

What passes is an archive `tarfile` reads without surprises: the members it finds are those the
scan found, at the same offsets and of the same sizes.
"""

from __future__ import annotations

import os
import re
import stat
import tarfile
from typing import IO, BinaryIO

from agent.errors import AgentError

BLOCK = tarfile.BLOCKSIZE
MAX_MEMBERS = 10_000
MAX_METADATA_BYTES = 64 * 1024  # tarfile reads a metadata header whole
MAX_METADATA_TOTAL_BYTES = 256 * 1024  # and keeps what it read in the members it returns
MAX_METADATA_HEADERS = MAX_MEMBERS
MEMBER_TYPES = {tarfile.REGTYPE, tarfile.AREGTYPE}
PAX_TYPES = {tarfile.XHDTYPE, tarfile.SOLARIS_XHDTYPE}  # tarfile treats both alike
# The metadata headers allowed in front of one member, each kind at most once: an `x` and an
# `X` are both the member's pax header.
METADATA_KINDS = {
    tarfile.XHDTYPE: "pax",
    tarfile.SOLARIS_XHDTYPE: "pax",
    tarfile.GNUTYPE_LONGNAME: "GNU long-name",
    tarfile.GNUTYPE_LONGLINK: "GNU long-link",
}
TYPE_NAMES = {
    tarfile.SYMTYPE: "a symbolic link",
    tarfile.LNKTYPE: "a hard link",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.DIRTYPE: "a directory",
    tarfile.FIFOTYPE: "a FIFO",
    tarfile.CONTTYPE: "a contiguous file",
    tarfile.GNUTYPE_SPARSE: "a GNU sparse file",
}
# tarfile.TarFile's defaults: a header decodes here exactly as tarfile.open decodes it.
ENCODING, ERRORS = tarfile.ENCODING, "surrogateescape"
# tarfile searches a pax header for this anywhere and decodes it as strict UTF-8.
HDRCHARSET = re.compile(rb"\d+ hdrcharset=([^\n]+)\n")
LENGTH_DIGITS = 20  # a pax record's length; int() of a longer one can raise ValueError


class BundleRefused(AgentError):
    """The bundle is unsafe, tampered with or not for this agent; nothing was applied."""


def open_bundle(path: str | os.PathLike[str], max_bytes: int | None = None) -> BinaryIO:
    """Open the bundle at `path`: a regular file (after symlinks) of at most `max_bytes`.

    A device or a FIFO is refused before a byte is read from it: /dev/zero never ends, and
    opening a FIFO would wait for a writer (hence O_NONBLOCK, which a regular file ignores).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        raise BundleRefused(f"cannot read {path}: {error.strerror or error}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise BundleRefused(
                f"cannot read {path}: it is {_file_kind(info.st_mode)}, not a regular file"
            )
        if max_bytes is not None and info.st_size > max_bytes:
            raise BundleRefused(
                f"{path} is {info.st_size} bytes, more than max_bundle_bytes ({max_bytes})"
            )
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _file_kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a file"


def scan_headers(handle: IO[bytes]) -> list[tuple[int, int]]:
    """Check every raw tar header; return each member's data offset and size, in order.

    Raise BundleRefused at the first header that `tarfile` would read unbounded, recurse on,
    seek past the file's end for, or that a genuine bundle never holds.
    """
    end = handle.seek(0, os.SEEK_END)
    handle.seek(0)
    members: list[tuple[int, int]] = []
    headers = metadata_bytes = 0
    pending: dict[str, int] = {}  # the metadata in front of the next member: kind -> offset
    name: str | None = None  # the next member's name, from its L or pax header
    pax_size: int | None = None  # the next member's size, from its pax header
    while True:
        at = handle.tell()
        block = handle.read(BLOCK)
        if len(block) < BLOCK:
            if at == 0:  # tarfile.open fails on it
                raise BundleRefused("not a tar file: shorter than one tar header")
            break  # tarfile stops at a short block too
        try:
            header = tarfile.TarInfo.frombuf(block, ENCODING, ERRORS)
        except tarfile.EOFHeaderError:  # type: ignore[attr-defined]
            break  # a zero block: the end
        except tarfile.HeaderError as error:
            raise BundleRefused(
                f"not a valid tar file: the tar header at byte {at} is damaged ({error})"
            ) from None
        size, kind = header.size, header.type
        if size < 0:
            raise BundleRefused(f"a tar header with a negative size at byte {at}")
        if kind == tarfile.XGLTYPE:
            raise BundleRefused(
                f"a pax global header at byte {at}: tarfile applies it to every later member, "
                "and a bundle has none"
            )
        metadata = METADATA_KINDS.get(kind)
        if metadata is not None:
            _check_inside(at, size, end)
            if size > MAX_METADATA_BYTES:
                raise BundleRefused(
                    f"a {size}-byte tar metadata header (type {kind.decode()!r}) at byte {at}; "
                    f"at most {MAX_METADATA_BYTES}"
                )
            if metadata in pending:
                raise BundleRefused(
                    f"two {metadata} tar metadata headers for one member, at bytes "
                    f"{pending[metadata]} and {at}"
                )
            headers += 1
            metadata_bytes += size
            if headers > MAX_METADATA_HEADERS:
                raise BundleRefused(f"more than {MAX_METADATA_HEADERS} tar metadata headers")
            if metadata_bytes > MAX_METADATA_TOTAL_BYTES:
                raise BundleRefused(
                    f"more than {MAX_METADATA_TOTAL_BYTES} bytes of tar metadata headers"
                )
            pending[metadata] = at
            # tarfile reads the padding too, and parses pax records found in it.
            data = handle.read(_padded(size))
            if kind in PAX_TYPES:
                records = pax_records(data, size, at)
                # In a chain of headers the outer one's name wins in tarfile: so here.
                if b"path" in records and name is None:
                    name = records[b"path"].decode("utf-8", ERRORS).rstrip("/")
                if b"size" in records:
                    pax_size = _pax_size(records[b"size"], at)
            elif kind == tarfile.GNUTYPE_LONGNAME and name is None:
                name = data.split(b"\0", 1)[0].decode(ENCODING, ERRORS)
            continue
        shown = name if name is not None else header.name
        if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
            raise BundleRefused(f"member {shown!r} is a link (to {header.linkname!r})")
        if kind not in MEMBER_TYPES:
            what = TYPE_NAMES.get(kind, f"of an unknown tar type {kind!r}")
            raise BundleRefused(f"member {shown!r} is not a regular file: it is {what}")
        if pax_size is not None:
            size = pax_size
        _check_inside(at, size, end)
        members.append((at + BLOCK, size))
        if len(members) > MAX_MEMBERS:
            raise BundleRefused(f"more than {MAX_MEMBERS} members")
        pending, name, pax_size = {}, None, None
        handle.seek(at + BLOCK + _padded(size))
    if pending:
        raise BundleRefused(
            f"a tar metadata header at byte {min(pending.values())} with no member after it"
        )
    return members


def pax_records(data: bytes, size: int, at: int) -> dict[bytes, bytes]:
    """Parse a pax header's records (`"%d %s=%s\\n"`), refusing what tarfile would misread.

    tarfile parses with a regular expression, from the start until it stops matching, and
    reads the padding after `size` too. Accepting only records that are well formed end to
    end, and padding of zeros, makes its parse and this one the same, and linear.
    """
    records: dict[bytes, bytes] = {}
    pos = 0
    while pos < size:
        space = data.find(b" ", pos, pos + LENGTH_DIGITS + 1)
        digits = data[pos:space] if space > pos else b""
        stop = pos + int(digits) if digits.isdigit() else 0
        keyword, equals, value = data[space + 1 : stop - 1].partition(b"=")
        # stop > space + 1 > pos: every turn advances, and a record holds its "k=" and "\n".
        ends = data[stop - 1 : stop] == b"\n"
        if not (space + 1 < stop <= size and ends and keyword and equals):
            raise BundleRefused(f"a malformed pax record at byte {pos} of the header at {at}")
        if keyword.startswith(b"GNU.sparse."):
            raise BundleRefused(f"a pax header at byte {at} describes a sparse file")
        records[keyword] = value
        pos = stop
    if data[size:].strip(b"\0"):
        raise BundleRefused(f"the pax header at byte {at} has data in its padding")
    found = HDRCHARSET.search(data)
    if found is not None:
        try:
            found.group(1).decode("utf-8")
        except UnicodeDecodeError:
            raise BundleRefused(
                f"the pax header at byte {at} has a hdrcharset not in UTF-8"
            ) from None
    return records


def _pax_size(value: bytes, at: int) -> int:
    # tarfile takes int(value), 0 if that fails; only plain ASCII digits mean the same to both.
    if not (value.isdigit() and len(value) <= LENGTH_DIGITS):
        raise BundleRefused(f"the pax header at byte {at} has a size that is not a number")
    return int(value)


def _check_inside(at: int, size: int, end: int) -> None:
    """Refuse a size that would take tarfile past the end of the file (or seek it to 10**15)."""
    left = end - at - BLOCK
    if _padded(size) > left:
        raise BundleRefused(
            f"the tar header at byte {at} declares {size} bytes, but only {max(left, 0)} follow "
            "in the bundle"
        )


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK
