"""The worker's wire protocol over its Unix socket (standard library only: the thin client imports it).

A call: the client sends one request, ``MAGIC`` + a 4-byte big-endian length + a JSON object, with its stdin,
stdout and stderr file descriptors attached (``SCM_RIGHTS``), so the worker's child process writes straight to
the client's terminal, pipe or file: output, progress bars and ``isatty()`` are the same as in-process. The
worker answers with JSON lines: ``{"decline": reason}`` (the client then runs in-process), or ``{"started": pid}``
followed by ``{"exit": code}`` or ``{"signal": number}`` when the child ends. While the call runs the client may
send ``{"signal": number}`` lines (Ctrl-C, SIGTERM, SIGHUP it received), which the worker delivers to the child.
A control request (``{"op": "status"}`` or ``{"op": "stop"}``, no descriptors) gets one JSON line back.

Example:
    >>> frame = encode_request({"op": "status"})
    >>> frame[:4] == MAGIC, decode_length(frame[4:8]), json.loads(frame[8:])
    (True, 15, {'op': 'status'})
"""

from __future__ import annotations

import json
import struct

MAGIC = b"GDV1"
HEADER = 8
MAX_REQUEST = 16 * 1024 * 1024
"""Largest request accepted (argv and environment), bytes."""


def encode_request(obj: dict) -> bytes:
    """``MAGIC`` + length + the JSON of ``obj``."""
    body = json.dumps(obj, separators=(",", ":")).encode()
    return MAGIC + struct.pack(">I", len(body)) + body


def decode_length(header: bytes) -> int:
    """The body length of a 4-byte length field."""
    return struct.unpack(">I", header)[0]


def encode_line(obj: dict) -> bytes:
    """One JSON line (a reply, or a client's signal message)."""
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


class LineReader:
    """Splits bytes received from a socket into JSON objects, one per line (``feed`` returns the complete ones).

    Example:
        >>> r = LineReader()
        >>> r.feed(b'{"a": 1}\\n{"b"'), r.feed(b': 2}\\n')
        ([{'a': 1}], [{'b': 2}])
    """

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> list[dict]:
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        return [json.loads(x) for x in lines if x.strip()]


__all__ = ["HEADER", "MAGIC", "MAX_REQUEST", "LineReader", "decode_length", "encode_line", "encode_request"]
