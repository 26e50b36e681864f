"""Reading a printable code PNG back as a person and a phone would: decode the QR, find the text under it."""
from __future__ import annotations

import io
from dataclasses import dataclass

INK = 128   # a pixel darker than this is ink


@dataclass
class Card:
    image: object                      # PIL.Image, greyscale
    text: str                          # what the QR decodes to
    code_box: tuple[int, int, int, int]   # the symbol's corners as decoded (left, top, right, bottom), no quiet zone
    module_px: int
    text_rows: list[tuple[int, int]]   # (top, bottom) of each line of text under the code
    text_box: tuple[int, int, int, int] | None   # all the ink under the code's quiet zone


def _dark_rows(img, top: int) -> list[int]:
    w = img.width
    data = img.tobytes()
    return [y for y in range(top, img.height) if min(data[y * w:(y + 1) * w]) < INK]


def read(png: bytes, modules: int) -> Card:
    """`modules`: the symbol's width in modules (without the quiet zone), from the qrcode matrix."""
    import zxingcpp
    from PIL import Image

    img = Image.open(io.BytesIO(png))
    img.load()
    grey = img.convert("L")
    found = zxingcpp.read_barcodes(grey)
    assert len(found) == 1, f"{len(found)} codes found"
    pos = found[0].position
    xs = [p.x for p in (pos.top_left, pos.top_right, pos.bottom_right, pos.bottom_left)]
    ys = [p.y for p in (pos.top_left, pos.top_right, pos.bottom_right, pos.bottom_left)]
    box = (min(xs), min(ys), max(xs), max(ys))   # corners: the right and bottom edges are exclusive
    module = (box[2] - box[0]) // modules
    assert module * modules == box[2] - box[0], "modules are not whole pixels"
    below = box[3] + 4 * module   # under the bottom quiet zone
    rows = _dark_rows(grey, below)
    runs: list[tuple[int, int]] = []
    for y in rows:
        if runs and y == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], y)
        else:
            runs.append((y, y))
    text_box = None
    if rows:
        band = grey.crop((0, below, grey.width, grey.height)).point(lambda v: 255 if v < INK else 0)
        left, top, right, bottom = band.getbbox()
        text_box = (left, top + below, right, bottom + below)
    return Card(img, found[0].text, box, module, runs, text_box)


def quiet_zone_is_white(card: Card) -> bool:
    """The 4 modules around the symbol are on the card and hold no ink."""
    left, top, right, bottom = card.code_box
    q = 4 * card.module_px
    if left - q < 0 or top - q < 0 or right + q > card.image.width or bottom + q > card.image.height:
        return False
    grey = card.image.convert("L")
    strips = [(left - q, top - q, right + q, top), (left - q, bottom, right + q, bottom + q),
              (left - q, top, left, bottom), (right, top, right + q, bottom)]
    return all(grey.crop(s).getextrema()[0] >= INK for s in strips)
