"""
Is a file a pickle, whatever its name? Loading a pickle can run code, so the Hub publisher refuses any file whose
content is one, and the checkpoint converter names a pickle that calls itself `.safetensors`.

    describe_pickle("weights.joblib")  # -> "a pickle (protocol 4)", or None for anything else

It reads bytes only, never unpickles, and recognises: pickle streams (protocol 2-5 by their header; 0-1 by parsing
the opcodes of a whole file up to 16 MiB with `pickletools`, which executes nothing), `torch.save` zip archives (their
`data.pkl`) and legacy tar archives, zip / tar archives holding pickles (e.g. `.npz` of object arrays), numpy `.npy`
files of Python objects, and gzip / bz2 / xz / zlib streams of any of these (e.g. `data.pkl.gz`, joblib's compressed
files). A safetensors file is recognised first: its 8-byte header length can begin with the pickle marker 0x80.
"""

import bz2
import gzip
import io
import lzma
import os
import pickletools
import tarfile
import zipfile
import zlib


HEAD_BYTES = 1 << 16
FULL_PARSE_BYTES = 16 << 20  # protocol 0-1 pickles have no header: parse whole files up to this size
_DECOMPRESSORS = (
    (b"\x1f\x8b", "gzip", lambda data: gzip.GzipFile(fileobj=io.BytesIO(data)).read(HEAD_BYTES)),
    (b"BZh", "bz2", lambda data: bz2.BZ2Decompressor().decompress(data, HEAD_BYTES)),
    (b"\xfd7zXZ\x00", "xz", lambda data: lzma.LZMADecompressor().decompress(data, HEAD_BYTES)),
    (b"\x5d\x00\x00", "lzma", lambda data: lzma.LZMADecompressor().decompress(data, HEAD_BYTES)),
)
_ZLIB_HEADERS = (b"\x78\x01", b"\x78\x5e", b"\x78\x9c", b"\x78\xda")


def describe_pickle(path) -> str | None:
    """What kind of pickle the file at `path` is, in words ("a pickle (protocol 4)", "a torch.save archive ...",
    "a gzip-compressed pickle ..."), or None if its content is not one."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        data = f.read(FULL_PARSE_BYTES if size <= FULL_PARSE_BYTES else HEAD_BYTES)
    if _is_safetensors(data, size):
        return None
    if data[:4] == b"PK\x03\x04":
        return _describe_archive(zipfile.ZipFile(path), "zip")
    if size > 262 and _is_tar(data):
        return _describe_archive(tarfile.open(path), "tar")
    return describe_pickle_bytes(data, complete=size <= FULL_PARSE_BYTES)


def describe_pickle_bytes(data: bytes, complete: bool = True) -> str | None:
    """`describe_pickle` for the first bytes of a file or stream (`complete`: all of it)."""
    if len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5:
        return f"a pickle (protocol {data[1]})"
    if data[:6] == b"\x93NUMPY":
        header = data[10 : 10 + int.from_bytes(data[8:10], "little")] if data[6] == 1 else data[12:HEAD_BYTES]
        if b"'descr': '|O'" in header or b"'descr': 'O'" in header or b"('O'" in header:
            return "a numpy array of Python objects (stored as a pickle)"
        return None
    for magic, name, decompress in _DECOMPRESSORS:
        if data.startswith(magic):
            inner = _decompressed(decompress, data)
            what = describe_pickle_bytes(inner, complete=False) if inner else None
            return f"{'an' if name == 'xz' else 'a'} {name}-compressed {what.removeprefix('a ')}" if what else None
    if data[:2] in _ZLIB_HEADERS:
        inner = _decompressed(lambda d: zlib.decompressobj().decompress(d, HEAD_BYTES), data)
        what = describe_pickle_bytes(inner, complete=False) if inner else None
        if what:
            return f"a zlib-compressed {what.removeprefix('a ')}"
    if complete and _parses_as_old_pickle(data):
        return "a pickle (protocol 0 or 1)"
    return None


def _decompressed(decompress, data: bytes) -> bytes | None:
    try:
        return decompress(data)
    except (OSError, EOFError, ValueError, lzma.LZMAError, zlib.error):
        return None


def _is_safetensors(data: bytes, size: int) -> bool:
    """8-byte little-endian header length, then a JSON object that fits in the file."""
    if len(data) < 10:
        return False
    length = int.from_bytes(data[:8], "little")
    return data[8:9] == b"{" and 2 <= length <= size - 8


def _is_tar(data: bytes) -> bool:
    return data[257:262] == b"ustar"


def _parses_as_old_pickle(data: bytes) -> bool:
    """A whole protocol 0-1 pickle: opcodes from the first byte to a STOP that is the last byte."""
    if not data or data[-1:] != b".":
        return False
    try:
        stop = None
        for opcode, _, position in pickletools.genops(data):
            if opcode.name == "STOP":
                stop = position
                break
        return stop == len(data) - 1
    except Exception:  # noqa: BLE001 - not opcodes: not a pickle
        return False


def _describe_archive(archive, kind: str) -> str | None:
    """A zip or tar archive that holds a pickle (`torch.save`'s data.pkl, a legacy torch tar, pickled members)."""
    with archive:
        if kind == "zip":
            members = [(info.filename, info.file_size) for info in archive.infolist() if not info.is_dir()]
        else:
            members = [(member.name, member.size) for member in archive.getmembers() if member.isfile()]
        for name, _ in members:
            base = name.rsplit("/", 1)[-1]
            if base == "data.pkl":
                return f"a torch.save archive (its {name} is a pickle)"
            if base in ("pickle", "storages", "tensors") and kind == "tar":
                return f"a legacy torch.save tar archive (its {name} is a pickle)"
        for name, size in members[:1000]:
            with archive.open(name) if kind == "zip" else archive.extractfile(name) as member:
                head = member.read(min(size, FULL_PARSE_BYTES))
            what = describe_pickle_bytes(head, complete=size <= FULL_PARSE_BYTES)
            if what:
                return f"a {kind} archive holding {what} ({name})"
    return None


__all__ = ["describe_pickle", "describe_pickle_bytes"]
