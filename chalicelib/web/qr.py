"""QR codes as images: inline SVG for pages, and the printable code (SVG or PNG) with the shop's name.

qrcode (and for PNG, pypng) load only when a code is drawn.
"""
from __future__ import annotations

from html import escape


def _matrix(data: str) -> list[list[bool]]:
    import qrcode

    q = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4)
    q.add_data(data)
    q.make(fit=True)
    return q.get_matrix()


def _path(matrix: list[list[bool]]) -> str:
    """One SVG path of unit squares, runs of dark modules joined (small output on slow links)."""
    parts = []
    for y, row in enumerate(matrix):
        x = 0
        while x < len(row):
            if row[x]:
                start = x
                while x < len(row) and row[x]:
                    x += 1
                parts.append(f"M{start} {y}h{x - start}v1h-{x - start}z")
            else:
                x += 1
    return "".join(parts)


def svg(data: str, label: str = "QR code") -> str:
    """An inline SVG of the code that scales to its box."""
    m = _matrix(data)
    n = len(m)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {n} {n}" role="img" aria-label="{escape(label)}" '
            f'shape-rendering="crispEdges"><rect width="{n}" height="{n}" fill="#fff"/>'
            f'<path fill="#000" d="{_path(m)}"/></svg>')


def printable_svg(data: str, lines: list[str]) -> str:
    """The code with text lines under it (merchant name, store), ready to print."""
    m = _matrix(data)
    n = len(m)
    scale = 8
    size = n * scale
    text_h = 28 * len(lines) + 16
    bold = ' font-weight="bold"'
    texts = "".join(
        f'<text x="{size // 2}" y="{size + 24 + 28 * i}" text-anchor="middle" font-family="sans-serif" '
        f'font-size="{20 if i == 0 else 16}"{bold if i == 0 else ""}>{escape(line)}</text>'
        for i, line in enumerate(lines))
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="{size}" '
            f'height="{size + text_h}" viewBox="0 0 {size} {size + text_h}"><rect width="100%" height="100%" '
            f'fill="#fff"/><g transform="scale({scale})" shape-rendering="crispEdges"><path fill="#000" '
            f'd="{_path(m)}"/></g>{texts}</svg>')


def printable_png(data: str) -> bytes:
    """The code as a PNG (text is left to the SVG: drawing fonts would need Pillow on Lambda)."""
    import io

    import png  # pypng

    m = _matrix(data)
    scale = 8
    rows = []
    for row in m:
        line = []
        for dark in row:
            line.extend([0 if dark else 1] * scale)
        rows.extend([line] * scale)
    out = io.BytesIO()
    png.Writer(len(rows[0]), len(rows), greyscale=True, bitdepth=1).write(out, rows)
    return out.getvalue()
