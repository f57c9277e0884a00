"""What an uploaded file really is, told from its bytes, never from its name or declared type.

Photos must decode with Pillow (JPEG, PNG, WebP; HEIC/HEIF through pi-heif, the
decode-only build of pillow-heif, which carries no GPL encoder); videos must have a
recognisable container (ISO BMFF for MP4/MOV, EBML for WebM); documents must be
PDFs. Anything else, or anything damaged, is refused with a reason a person can act on.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO, Literal

import pi_heif
from PIL import Image, UnidentifiedImageError

pi_heif.register_heif_opener()

# A decoded photo costs up to 4 bytes a pixel. 64 megapixels covers the full-resolution
# output of 48/50 MP phone cameras and keeps one check under ~256 MiB; it sits below
# Pillow's own limit so our refusal, with its message, comes first.
MAX_IMAGE_PIXELS = 64_000_000

Kind = Literal["photo", "video", "document"]

# Pillow format name -> the content type we store. MPO (multi-picture JPEG, written by
# some cameras) is opened by the JPEG plugin and is a JPEG to every viewer.
_PHOTO_TYPES = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "HEIF": "image/heic",
}
_LABELS = {"MPO": "JPEG", "WEBP": "WebP", "HEIF": "HEIC/HEIF"}
# Only these decoders ever see an upload: fewer parsers, less attack surface.
_PIL_FORMATS = ["JPEG", "PNG", "WEBP", "HEIF"]

ACCEPTED = "a JPEG, PNG, WebP or HEIC photo, an MP4, MOV or WebM video, or a PDF"


class MediaRefused(ValueError):
    """The file is not what evidence may be; the message completes "<filename> ..."."""


@dataclass(frozen=True)
class Detected:
    kind: Kind
    content_type: str


def detect(stream: BinaryIO) -> Detected:
    """Classify a seekable stream by its content; raises MediaRefused when it is none."""
    found = _photo(stream) or _iso_bmff(stream) or _webm(stream) or _pdf(stream)
    if found is None:
        raise MediaRefused(f"is not {ACCEPTED} (judged by its content, not its name or type)")
    return found


# --- photos -------------------------------------------------------------------------


def _photo(stream: BinaryIO) -> Detected | None:
    stream.seek(0)
    try:
        # The context manager, unlike close(), leaves the caller's stream open.
        with Image.open(stream, formats=_PIL_FORMATS) as probe:
            fmt, (width, height) = probe.format or "?", probe.size
    except UnidentifiedImageError:
        return None  # not an image at all: maybe a video or a document
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own refusal far beyond its limit (or its warning, when warnings are
        # errors); below that, the explicit check on the declared size catches it.
        raise MediaRefused(
            f"declares more than {MAX_IMAGE_PIXELS} pixels (a possible decompression bomb)"
        ) from None
    if fmt not in _PHOTO_TYPES:
        return None
    # Checked on the declared size, before a single pixel is decoded.
    if width * height > MAX_IMAGE_PIXELS:
        raise MediaRefused(
            f"is {width} x {height} pixels; photos may have at most {MAX_IMAGE_PIXELS} pixels"
        )
    try:
        stream.seek(0)
        with Image.open(stream, formats=_PIL_FORMATS) as im:
            im.verify()  # structure and checksums, where the format has them
        # verify() leaves the image unusable and misses truncated pixel data: decode it all.
        stream.seek(0)
        with Image.open(stream, formats=_PIL_FORMATS) as im:
            im.load()
    except Exception:
        # Decoders of hostile bytes fail in many ways (OSError, SyntaxError, ValueError,
        # struct.error, EOFError...); each means the same: this is no usable photo.
        raise MediaRefused(
            f"looks like a {_LABELS.get(fmt, fmt)} image but cannot be decoded "
            "(damaged or truncated)"
        ) from None
    return Detected("photo", _PHOTO_TYPES[fmt])


# --- MP4 / MOV (ISO base media file format, ISO/IEC 14496-12) -------------------------
#
# The file is a sequence of top-level boxes: a 4-byte big-endian size (1 = a 64-bit size
# follows the type, 0 = up to the end of the file), a 4-byte type, then the payload.
# MP4 starts with `ftyp` whose first field is the major brand; classic QuickTime files
# may start straight with a movie atom. We require the boxes to tile the file exactly
# and a `moov` (the movie header, without which nothing can play) among them.

_MP4_BRANDS = {
    b"isom", b"iso2", b"iso3", b"iso4", b"iso5", b"iso6", b"iso8", b"iso9",
    b"mp41", b"mp42", b"avc1", b"dash", b"mmp4", b"MSNV", b"XAVC", b"f4v ",
    b"M4V ", b"M4VH", b"M4VP",
}  # fmt: skip
_QUICKTIME_BRAND = b"qt  "
_QUICKTIME_FIRST_ATOMS = {b"moov", b"wide", b"mdat", b"free", b"skip", b"pnot"}
_MAX_BOXES = 10_000


def _iso_bmff(stream: BinaryIO) -> Detected | None:
    stream.seek(0)
    head = stream.read(12)
    if len(head) < 8:
        return None
    first = head[4:8]
    if first == b"ftyp":
        brand = head[8:12]
        if brand == _QUICKTIME_BRAND:
            content_type, label = "video/quicktime", "MOV"
        elif brand in _MP4_BRANDS:
            content_type, label = "video/mp4", "MP4"
        else:
            return None  # HEIC/AVIF photos and other ISO BMFF files are no videos
    elif first in _QUICKTIME_FIRST_ATOMS:
        content_type, label = "video/quicktime", "MOV"
    else:
        return None
    if not _boxes_tile_the_file(stream):
        raise MediaRefused(f"looks like an {label} video but its structure is damaged or truncated")
    return Detected("video", content_type)


def _boxes_tile_the_file(stream: BinaryIO) -> bool:
    end = stream.seek(0, 2)
    pos, seen_moov = 0, False
    for _ in range(_MAX_BOXES):
        if pos == end:
            return seen_moov
        stream.seek(pos)
        header = stream.read(8)
        if len(header) < 8:
            return False
        size, kind = struct.unpack(">I4s", header)
        if not all(0x20 <= c < 0x7F for c in kind):
            return False
        seen_moov = seen_moov or kind == b"moov"
        if size == 0:  # the last box runs to the end of the file
            return seen_moov
        if size == 1:
            large = stream.read(8)
            if len(large) < 8:
                return False
            (size,) = struct.unpack(">Q", large)
            if size < 16:
                return False
        elif size < 8:
            return False
        pos += size
        if pos > end:
            return False
    return False


# --- WebM (Matroska/EBML, RFC 8794 and RFC 9559) ---------------------------------------
#
# An EBML file starts with the EBML header element (ID 1A 45 DF A3). Inside it, the
# DocType element (ID 42 82) names the format: "webm" for WebM. The header is followed
# by the Segment element (ID 18 53 80 67) holding the media. IDs and sizes are
# variable-length integers: the count of leading zero bits in the first byte gives the
# extra bytes; sizes drop that length marker, IDs keep it.

_EBML_MAGIC = b"\x1a\x45\xdf\xa3"
_DOC_TYPE = 0x4282
_SEGMENT = 0x18538067
_MAX_EBML_HEADER = 4096


def _vint(data: bytes, pos: int, *, keep_marker: bool) -> tuple[int, int] | None:
    """(value, next position) of the variable-length integer at ``pos``, or None."""
    if pos >= len(data) or data[pos] == 0:
        return None
    length = 8 - data[pos].bit_length() + 1
    if pos + length > len(data):
        return None
    value = int.from_bytes(data[pos : pos + length], "big")
    if not keep_marker:
        value &= (1 << (7 * length)) - 1
    return value, pos + length


def _webm(stream: BinaryIO) -> Detected | None:
    stream.seek(0)
    data = stream.read(len(_EBML_MAGIC) + 8 + _MAX_EBML_HEADER + 4)
    if not data.startswith(_EBML_MAGIC):
        return None
    broken = MediaRefused("looks like a WebM video but its header is damaged or truncated")
    sized = _vint(data, len(_EBML_MAGIC), keep_marker=False)
    if sized is None or sized[0] > _MAX_EBML_HEADER:
        raise broken
    header_size, pos = sized
    header_end = pos + header_size
    doc_type = None
    while pos < header_end:
        element = _vint(data, pos, keep_marker=True)
        if element is None:
            raise broken
        size = _vint(data, element[1], keep_marker=False)
        if size is None or size[1] + size[0] > header_end:
            raise broken
        if element[0] == _DOC_TYPE:
            doc_type = data[size[1] : size[1] + size[0]].rstrip(b"\0")
        pos = size[1] + size[0]
    if doc_type != b"webm":
        return None  # Matroska (.mkv) and other EBML formats are not accepted
    segment = _vint(data, header_end, keep_marker=True)
    if segment is None or segment[0] != _SEGMENT:
        raise broken
    return Detected("video", "video/webm")


# --- PDF ------------------------------------------------------------------------------


def _pdf(stream: BinaryIO) -> Detected | None:
    stream.seek(0)
    head = stream.read(6)
    if head.startswith(b"%PDF-") and head[5:6].isdigit():
        return Detected("document", "application/pdf")
    return None
