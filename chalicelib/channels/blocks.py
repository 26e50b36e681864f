"""A statement's bytes in large blocks of whole lines, for the parsers' fast readers.

A million-line file read a line at a time pays for a Python object and a loop turn per line before
any parsing starts; read in blocks of about a megabyte, each block is split into lines in one C call
and decoded in one more. Memory stays bounded by the block size: the file is never held whole.
"""
from __future__ import annotations

from typing import Iterable, Iterator

BLOCK_BYTES = 1 << 20
LONGEST_LINE_BYTES = 1 << 18  # above every parser's line limit (16k characters, 4 bytes each at most)


class Blocks:
    """The source (an object with `read(n)`, or any iterable of byte strings: lines, S3 chunks) as blocks
    that each end with b"\\n", except the file's last when the file does not end with one.

    A run of more than `limit` bytes without a newline is given out as it is (no line of a statement is
    anywhere near that long, so the reader refuses it as too long and nothing more is buffered).
    `ended_cleanly`: the file's last byte is a newline, or the file is empty."""

    def __init__(self, source: Iterable[bytes], size: int | None = None):
        self.source = source
        self.size = size or BLOCK_BYTES
        self.limit = max(4 * self.size, LONGEST_LINE_BYTES)
        self.ended_cleanly = True

    def _pieces(self) -> Iterator[bytes]:
        read = getattr(self.source, "read", None)
        if callable(read):
            while True:
                piece = read(self.size)
                if not piece:
                    return
                yield piece
        else:
            yield from self.source

    def __iter__(self) -> Iterator[bytes]:
        pending: list[bytes] = []
        have = 0
        for piece in self._pieces():
            if not piece:
                continue
            pending.append(piece)
            have += len(piece)
            if have < self.size:
                continue
            data = b"".join(pending)
            cut = data.rfind(b"\n") + 1
            if cut == 0 and have <= self.limit:
                pending = [data]
                continue
            if cut == 0 or cut == len(data):
                pending, have = [], 0
                self.ended_cleanly = data.endswith(b"\n")
                yield data
            else:
                pending, have = [data[cut:]], len(data) - cut
                self.ended_cleanly = True
                yield data[:cut]
        if pending:
            data = b"".join(pending)
            self.ended_cleanly = data.endswith(b"\n")
            yield data
