"""QR codes as images: inline SVG for pages, and the printable code (SVG or PNG) with the shop's name.

qrcode (and for PNG, Pillow and the font) load only when a code is drawn.
"""
from __future__ import annotations

import re
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


# The printed code: an A6 card at 300 dpi (105 x 148 mm), the code as wide as the card allows (its 4-module
# quiet zone kept white), the names centred under it in a CJK font shipped as a package (see README).
PRINT_DPI = 300
A6_PX = (1240, 1748)                  # 105 x 148 mm at 300 dpi
TEXT_MARGIN_PX = 80                   # ~7 mm each side: text never runs to the card's edge
# font sizes in px (96 px ~ 8 mm): largest; smallest still kept on one line; smallest of all (~3 mm)
NAME_SIZES = (96, 64, 40)             # the merchant's name
STORE_SIZES = (72, 48, 36)            # the store's
LINE_HEIGHT_PCT = 130                 # a line's height, in per cent of its font size (integers only)


def _font_path() -> str:
    """WenQuanYi Micro Hei (Latin, CJK, kana, hangul; Apache-2.0), as the wheel paperang-p2-fonts-cjk ships it."""
    from importlib import resources

    return str(resources.files("paperang_p2_fonts_cjk") / "fonts" / "wqy-microhei.ttc")


_fonts: dict[int, object] = {}


def _font(size: int):
    from PIL import ImageFont

    if size not in _fonts:  # BASIC layout: the same shaping everywhere (no fribidi/raqm lookup on Lambda)
        _fonts[size] = ImageFont.truetype(_font_path(), size, index=0, layout_engine=ImageFont.Layout.BASIC)
    return _fonts[size]


_WIDE = "\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef"   # CJK, hangul, full-width forms
_BREAKS = re.compile(rf"[{_WIDE}]\s*|[^\s{_WIDE}]+\s*")


def _tokens(text: str) -> list[str]:
    """Where a line may break: after a space-separated word, or after any CJK character."""
    return _BREAKS.findall(" ".join(text.split()))


def wrap(text: str, font, width: int) -> list[str]:
    """Greedy lines no wider than `width`; a word wider than a line is split between characters (never cut)."""
    lines: list[str] = []
    line = ""
    for token in _tokens(text):
        if font.getlength((line + token).rstrip()) <= width:
            line += token
            continue
        if line:
            lines.append(line.rstrip())
        while font.getlength(token.rstrip()) > width:  # one long word: as many characters as fit, then on
            cut = 1
            while cut < len(token) and font.getlength(token[:cut + 1]) <= width:
                cut += 1
            lines.append(token[:cut])
            token = token[cut:]
        line = token
    if line.strip():
        lines.append(line.rstrip())
    return lines


def _balanced(text: str, font, width: int, count: int) -> list[str]:
    """The text in at most `count` lines of as even a length as wrapping allows (no lone last word)."""
    lo, hi = 1, width
    while lo < hi:  # the narrowest measure that still takes no more lines
        mid = (lo + hi) // 2
        if len(wrap(text, font, mid)) <= count:
            hi = mid
        else:
            lo = mid + 1
    return wrap(text, font, lo)


def _fit(text: str, sizes: tuple[int, int, int], width: int) -> tuple[int, list[str]]:
    """One line, shrinking down to the middle size; else two lines, shrinking down to the smallest; else at
    the smallest size, as many lines as it takes."""
    largest, one_line, smallest = sizes
    for count, floor in ((1, one_line), (2, smallest)):
        for size in range(largest, floor - 1, -4):
            lines = wrap(text, _font(size), width)
            if len(lines) <= count:
                return size, lines if len(lines) == 1 else _balanced(text, _font(size), width, count)
    return smallest, wrap(text, _font(smallest), width)


def _line_px(size: int) -> int:
    return size * LINE_HEIGHT_PCT // 100


def printable_png(data: str, lines: list[str]) -> bytes:
    """The code on an A6 card at 300 dpi with the names (merchant, store) centred under it, as PNG."""
    import io

    from PIL import Image, ImageDraw

    m = _matrix(data)  # the border (quiet zone) of 4 modules is part of the matrix
    width, min_height = A6_PX
    scale = width // len(m)
    code_px = scale * len(m)
    text_width = width - 2 * TEXT_MARGIN_PX
    blocks: list[tuple[int, list[str]]] = []
    for text in (t for t in lines if t):
        sizes = NAME_SIZES if not blocks else tuple(min(s, blocks[0][0]) for s in STORE_SIZES)  # never above the name
        blocks.append(_fit(text, sizes, text_width))
    gap = 24
    text_px = sum(_line_px(size) * len(rows) for size, rows in blocks) + gap * max(0, len(blocks) - 1)
    height = max(min_height, code_px + text_px + scale)  # a name that needs more room makes the card longer
    top = (height - code_px - text_px - scale) // 2
    left = (width - code_px) // 2

    img = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(img)
    for y, row in enumerate(m):
        for x, dark in enumerate(row):
            if dark:
                draw.rectangle((left + x * scale, top + y * scale, left + (x + 1) * scale - 1,
                                top + (y + 1) * scale - 1), fill=0)
    y = top + code_px
    for i, (size, rows) in enumerate(blocks):
        font = _font(size)
        bold = size // 48 if i == 0 else 0  # the merchant's name heavier (one weight in the font); small: plain
        for row in rows:
            draw.text((width // 2, y), row, font=font, fill=0, anchor="ma", stroke_width=bold, stroke_fill=0)
            y += _line_px(size)
        y += gap
    out = io.BytesIO()
    img.save(out, format="PNG", dpi=(PRINT_DPI, PRINT_DPI), optimize=True)
    return out.getvalue()
