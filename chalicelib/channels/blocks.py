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


class TextLines:
    """A UTF-8 statement's lines as text, a list per block: each block decoded and split at once (CRLF
    line ends read as LF: the parsers strip them alike). A line that is not UTF-8 reads as "\\n" (no
    line holds one) and its bytes, line end included, wait in `undecoded` for `raw`: the parser's own
    reading of that line decides (decodes it otherwise, or raises what it raises)."""

    def __init__(self, source: Iterable[bytes]):
        self.blocks = Blocks(source)
        self.undecoded: dict[int, bytes] = {}

    @property
    def ended_cleanly(self) -> bool:
        return self.blocks.ended_cleanly

    def __iter__(self) -> Iterator[list[str]]:
        first_line_no = 1
        for block in self.blocks:
            try:
                text = block.decode("utf-8")
            except UnicodeDecodeError:
                parts = block.split(b"\n")
                lines = []
                for n, part in enumerate(parts, start=first_line_no):
                    try:
                        lines.append(part.decode("utf-8").rstrip("\r"))
                    except UnicodeDecodeError:
                        lines.append("\n")
                        self.undecoded[n] = part + b"\n" if n - first_line_no < len(parts) - 1 else part
            else:
                lines = (text.replace("\r\n", "\n") if "\r" in text else text).split("\n")
            if lines[-1] == "":
                lines.pop()
            first_line_no += len(lines)
            yield lines

    def raw(self, line_no: int, line: str) -> str | bytes:
        """The line as read: its text, or the bytes of a line that is not UTF-8."""
        return self.undecoded.pop(line_no) if line == "\n" else line
