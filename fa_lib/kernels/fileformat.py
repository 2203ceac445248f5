"""The packed-weights file (``.fabin``): a versioned container for binary networks (thesis 5.4, Fig. 5.4).

Layout (all integers little-endian)::

    offset 0   8 bytes   magic  b"FALIBBIN"
    offset 8   uint32    format version (currently 1)
    offset 12  uint32    header length L in bytes
    offset 16  L bytes   UTF-8 JSON header (see below)
    ...        zero bytes up to the next multiple of 64: start D of the data section
    D + off    blobs, each starting at a multiple of 64 bytes from D

JSON header::

    {"format": "fa_lib.packed", "version": 1,
     "config": <free JSON object, e.g. how to rebuild the network skeleton, or null>,
     "entries": [{"name": str, "kind": "binary" | "float32" | "int64", "shape": [...],
                  "offset": int, "nbytes": int}, ...]}

``float32``/``int64`` blobs are raw row-major arrays.  A ``binary`` entry of shape ``[Cout, Cin, k, k]``
holds the signs of a convolution weight, densely: the weights are ordered ``(Cout, kh, kw, Cin)``
(input channel fastest, like the kernels' words), one bit each, bit i of byte b = element ``8*b + i``,
1 = negative (the sign rule: ``w >= 0 -> +1``), the last byte zero-padded; ``nbytes = ceil(n / 8)``.
That is the "32 weights per float" storage of the thesis: 32x smaller than float32 for these tensors.
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from fa_lib.atomic import atomic_write

MAGIC = b"FALIBBIN"
VERSION = 1
ALIGN = 64
_KINDS = {"float32": np.float32, "int64": np.int64}


def _align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def encode_binary(signs_negative: np.ndarray) -> bytes:
    """Dense sign bits of a boolean ``(Cout, Cin, k, k)`` "is negative" array, in file order."""
    ordered = np.ascontiguousarray(signs_negative.transpose(0, 2, 3, 1)).reshape(-1)
    return np.packbits(ordered, bitorder="little").tobytes()


def decode_binary(blob: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`encode_binary`: boolean "is negative" array of ``shape`` (Cout, Cin, k, k)."""
    cout, cin, kh, kw = shape
    n = cout * cin * kh * kw
    bits = np.unpackbits(np.frombuffer(blob, dtype=np.uint8), bitorder="little", count=n).astype(bool)
    return bits.reshape(cout, kh, kw, cin).transpose(0, 3, 1, 2)


def save(path: str | os.PathLike, entries: dict[str, tuple[str, Any]], config: Optional[dict] = None) -> int:
    """Writes ``entries`` (name -> (kind, value)) atomically; returns the file size in bytes.

    ``kind`` "binary": value is a boolean "is negative" array (Cout, Cin, k, k); "float32"/"int64": a
    tensor or array."""
    blobs, meta, offset = [], [], 0
    for name, (kind, value) in entries.items():
        if kind == "binary":
            neg = np.asarray(value, dtype=bool)
            if neg.ndim != 4:
                raise ValueError(f"binary entry {name!r} must be (Cout, Cin, k, k), got {neg.shape}")
            blob, shape = encode_binary(neg), list(neg.shape)
        elif kind in _KINDS:
            arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
            arr = np.ascontiguousarray(arr, dtype=np.dtype(_KINDS[kind]).newbyteorder("<"))
            blob, shape = arr.tobytes(), list(arr.shape)
        else:
            raise ValueError(f"entry {name!r}: unknown kind {kind!r} (binary, float32, int64)")
        meta.append({"name": name, "kind": kind, "shape": shape, "offset": offset, "nbytes": len(blob)})
        blobs.append((offset, blob))
        offset = _align(offset + len(blob))
    header = json.dumps({"format": "fa_lib.packed", "version": VERSION, "config": config,
                         "entries": meta}).encode("utf-8")
    start = _align(16 + len(header))
    def write(f) -> None:
        f.write(MAGIC + struct.pack("<II", VERSION, len(header)) + header)
        f.write(b"\0" * (start - 16 - len(header)))
        for off, blob in blobs:
            f.seek(start + off)
            f.write(blob)
        f.truncate(start + offset if blobs else start)

    return atomic_write(path, write).stat().st_size


def load(path: str | os.PathLike) -> tuple[Optional[dict], dict[str, tuple[str, Any]]]:
    """Reads a file written by :func:`save`: ``(config, {name: (kind, value)})`` where binary values are
    boolean "is negative" arrays and the others torch tensors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"packed-weights file not found: {path}")
    data = path.read_bytes()
    if len(data) < 16 or data[:8] != MAGIC:
        raise ValueError(f"{path}: not a fa_lib packed-weights file (bad magic)")
    version, header_len = struct.unpack("<II", data[8:16])
    if version != VERSION:
        raise ValueError(f"{path}: format version {version} is not supported (this library reads {VERSION})")
    header = json.loads(data[16:16 + header_len].decode("utf-8"))
    start = _align(16 + header_len)
    entries = {}
    for e in header["entries"]:
        blob = data[start + e["offset"]:start + e["offset"] + e["nbytes"]]
        if len(blob) != e["nbytes"]:
            raise ValueError(f"{path}: truncated entry {e['name']!r}")
        if e["kind"] == "binary":
            entries[e["name"]] = ("binary", decode_binary(blob, tuple(e["shape"])))
        elif e["kind"] in _KINDS:
            arr = np.frombuffer(blob, dtype=np.dtype(_KINDS[e["kind"]]).newbyteorder("<")).reshape(e["shape"])
            entries[e["name"]] = (e["kind"], torch.from_numpy(arr.astype(_KINDS[e["kind"]])))
        else:
            raise ValueError(f"{path}: unknown entry kind {e['kind']!r}")
    return header.get("config"), entries
