"""Real media bytes for tests, built at run time (no binary fixtures in the tree).

Every image helper takes a colour so that two calls can give two *different* photos
(evidence is counted by SHA-256, so identical bytes count once).
"""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

Color = tuple[int, int, int]


def _image(fmt: str, width: int, height: int, color: Color, **save: object) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format=fmt, **save)
    return buf.getvalue()


def png_bytes(width: int = 8, height: int = 8, color: Color = (200, 30, 30)) -> bytes:
    return _image("PNG", width, height, color)


def jpeg_bytes(width: int = 8, height: int = 8, color: Color = (30, 120, 200)) -> bytes:
    return _image("JPEG", width, height, color, quality=90)


def webp_bytes(width: int = 8, height: int = 8, color: Color = (30, 200, 90)) -> bytes:
    return _image("WEBP", width, height, color)


def heic_bytes(width: int = 8, height: int = 8, color: Color = (120, 60, 180)) -> bytes:
    # Encoding HEIC needs pillow-heif (a test dependency: it bundles the x265 encoder);
    # ReturnGuard itself only decodes, with pi-heif.
    import pillow_heif

    pillow_heif.register_heif_opener()
    return _image("HEIF", width, height, color)


def truncated_png_bytes() -> bytes:
    """A PNG cut in half: its header still reads, its pixel data does not."""
    # Noise compresses badly, so the cut lands well inside the pixel data.
    noise = bytes((i * 7919) % 251 for i in range(64 * 64 * 3))
    buf = io.BytesIO()
    Image.frombytes("RGB", (64, 64), noise).save(buf, format="PNG")
    data = buf.getvalue()
    return data[: len(data) // 2]


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def bomb_png_bytes(width: int = 20_000, height: int = 20_000) -> bytes:
    """A valid, all-black 1-bit PNG of ``width`` x ``height`` pixels: a decompression bomb.

    Built row by row with zlib (a few kilobytes for hundreds of megapixels), never as an
    image in memory.
    """
    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + packed bits
    deflate = zlib.compressobj(9)
    idat = b"".join(deflate.compress(row) for _ in range(height)) + deflate.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def mp4_bytes(brand: bytes = b"isom") -> bytes:
    """An ISO BMFF header: ``ftyp`` with ``brand`` then an (empty-movie) ``moov``/``mvhd``."""
    ftyp = _box(b"ftyp", brand + struct.pack(">I", 0x200) + b"isomiso2mp41")
    # mvhd version 0: flags, times, timescale 1000, duration 0, rate 1.0, volume 1.0,
    # reserved, identity matrix, pre-defined, next track id.
    matrix = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
    mvhd = _box(
        b"mvhd",
        struct.pack(">IIIII", 0, 0, 0, 1000, 0)
        + struct.pack(">IH", 0x10000, 0x100)
        + b"\0" * 10
        + matrix
        + b"\0" * 24
        + struct.pack(">I", 1),
    )
    return ftyp + _box(b"moov", mvhd)


def mov_bytes() -> bytes:
    """A QuickTime movie header (``ftyp`` with the ``qt  `` brand)."""
    return mp4_bytes(b"qt  ")


def _ebml(element_id: bytes, payload: bytes) -> bytes:
    assert len(payload) < 127
    return element_id + bytes([0x80 | len(payload)]) + payload


def webm_bytes(doc_type: bytes = b"webm") -> bytes:
    """An EBML header naming ``doc_type`` followed by an empty Segment."""
    header = b"".join(
        [
            _ebml(b"\x42\x86", b"\x01"),  # EBMLVersion 1
            _ebml(b"\x42\xf7", b"\x01"),  # EBMLReadVersion 1
            _ebml(b"\x42\xf2", b"\x04"),  # EBMLMaxIDLength 4
            _ebml(b"\x42\xf3", b"\x08"),  # EBMLMaxSizeLength 8
            _ebml(b"\x42\x82", doc_type),  # DocType
            _ebml(b"\x42\x87", b"\x04"),  # DocTypeVersion 4
            _ebml(b"\x42\x85", b"\x02"),  # DocTypeReadVersion 2
        ]
    )
    return _ebml(b"\x1a\x45\xdf\xa3", header) + b"\x18\x53\x80\x67\x80"


def pdf_bytes() -> bytes:
    return (
        b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
        b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\n"
        b"trailer<</Root 1 0 R>>\n%%EOF\n"
    )
