"""The printable code as PNG: an A6 card at 300 dpi, the code scannable with its quiet zone, the merchant's
and store's names (Chinese too) centred under it, wrapped or shrunk but never cut."""
from __future__ import annotations

import hashlib
import io

import pytest

from chalicelib.web import qr
from tests.support import printed

URL = "http://kauri.test/qr/qr_0123456789abcdefghijklmn"
MODULES = len(qr._matrix(URL)) - 8   # the qrcode matrix carries the 4-module border on each side
MM_PER_INCH = 25.4


def card(lines: list[str]) -> printed.Card:
    return printed.read(qr.printable_png(URL, lines), MODULES)


def centred(box, width: int, tolerance: int = 6) -> bool:
    left, _, right, _ = box
    return abs(left - (width - right)) <= tolerance


def test_png_is_an_a6_card_at_300_dpi_with_the_code_scannable_and_its_quiet_zone_white():
    c = card(["Queenstown Merino Ltd", "Beach St"])
    assert c.image.format == "PNG" and c.image.size == (1240, 1748)
    dpi = c.image.info["dpi"]
    assert round(dpi[0]) == round(dpi[1]) == 300
    assert round(c.image.width / 300 * MM_PER_INCH) == 105 and round(c.image.height / 300 * MM_PER_INCH) == 148
    assert c.text == URL
    assert c.module_px * MM_PER_INCH / 300 >= 0.5   # a module of at least half a millimetre prints and scans
    assert printed.quiet_zone_is_white(c)
    assert centred(c.code_box, c.image.width, tolerance=c.module_px)


def test_names_are_printed_centred_under_the_code_merchant_larger_than_store():
    c = card(["Queenstown Merino Ltd", "Beach St"])
    assert len(c.text_rows) == 2, c.text_rows
    (name_top, name_bottom), (store_top, store_bottom) = c.text_rows
    assert name_top > c.code_box[3] + 4 * c.module_px and store_top > name_bottom
    assert name_bottom - name_top > store_bottom - store_top
    # readable at 300 dpi: the store's line (capitals, no descender) stands at least 3 mm tall
    assert (store_bottom - store_top) * MM_PER_INCH / 300 >= 3
    assert centred(c.text_box, c.image.width)
    assert c.text_box[3] < c.image.height - qr.TEXT_MARGIN_PX


def has_glyph(font, ch: str) -> bool:
    """Drawn as itself, not as the font's missing-glyph box (what a plane-15 private-use code point gets)."""
    missing = font.getmask("\U000f0000")
    mask = font.getmask(ch)
    return mask.size != missing.size or bytes(mask) != bytes(missing)


def test_chinese_names_render_as_glyphs_not_missing_boxes():
    font = qr._font(72)
    assert not has_glyph(font, "\U000f0001")   # the check itself can fail
    for ch in "皇后镇美利奴羊毛有限公司购物中心店·（）" + "Queenstown Merino Ltd 0-9":
        assert has_glyph(font, ch), ch
    chinese = card(["皇后镇美利奴羊毛有限公司", "皇后镇购物中心店"])
    boxes = card(["\U000f0001" * 12, "\U000f0001" * 8])
    assert chinese.text == URL and len(chinese.text_rows) == 2 and centred(chinese.text_box, chinese.image.width)
    band = (0, chinese.text_rows[0][0], 1240, 1748)
    assert chinese.image.crop(band).tobytes() != boxes.image.crop(band).tobytes()


@pytest.mark.parametrize("name, store", [
    ("新西兰皇后镇美利奴羊毛与麦卢卡蜂蜜精品进出口贸易有限公司南岛分公司旗舰店总部大楼一二三四五六七八九十甲乙丙丁戊己庚辛壬癸子丑寅卯", "皇后镇弗兰克顿路瑞马克博斯公园购物中心一层东区一二三四五六七八九十甲乙丙丁戊己庚"),
    ("The Remarkably Long-Named Queenstown Merino & Manuka Honey Store", "Frankton Road Remarkables Park Centre"),
    ("Supercalifragilisticexpialidociousmerinowoolandmanukahoneyempori", "Beach St"),
])
def test_longest_names_wrap_inside_the_margins_on_the_same_card(name, store):
    assert len(name) <= 64 and len(store) <= 40   # trading_name and store_name limits
    c = card([name, store])
    assert c.image.size == (1240, 1748) and c.text == URL and printed.quiet_zone_is_white(c)
    left, _, right, bottom = c.text_box
    assert left >= qr.TEXT_MARGIN_PX - 4 and right <= c.image.width - qr.TEXT_MARGIN_PX + 4
    assert bottom < c.image.height and 3 <= len(c.text_rows) <= 6, c.text_rows
    assert centred(c.text_box, c.image.width, tolerance=40)   # lines of unequal length: roughly centred


def test_wrapping_breaks_between_words_or_chinese_characters_and_loses_nothing():
    font = qr._font(72)
    width = 600
    latin = qr.wrap("Queenstown Merino Ltd and Friends", font, width)
    assert len(latin) > 1 and all(font.getlength(line) <= width for line in latin)
    assert " ".join(latin) == "Queenstown Merino Ltd and Friends"   # broken at spaces only
    chinese = qr.wrap("皇后镇美利奴羊毛有限公司 Queenstown", font, width)
    assert all(font.getlength(line) <= width for line in chinese) and len(chinese) >= 2
    assert "".join(chinese).replace(" ", "") == "皇后镇美利奴羊毛有限公司Queenstown"
    word = qr.wrap("Supercalifragilisticexpialidocious", font, width)
    assert len(word) >= 2 and "".join(word) == "Supercalifragilisticexpialidocious"
    assert all(font.getlength(line) <= width for line in word)


def test_the_font_is_wenquanyi_micro_hei_as_debian_ships_it():
    """The font comes from a small third-party wheel: pin its bytes to the upstream 0.2.0-beta file (the one
    Debian's fonts-wqy-microhei 0.2.0-beta-3.1 installs), so a changed upload cannot slip in unseen."""
    with open(qr._font_path(), "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    assert digest == "2420e8078af796b19a3f6ef13de527a1a91c1e7171eea115926c614ced1009b3"


def test_png_bytes_are_small_enough_to_serve():
    png = qr.printable_png(URL, ["皇后镇美利奴羊毛有限公司", "Beach St"])
    assert len(png) < 80 * 1024
    from PIL import Image

    assert Image.open(io.BytesIO(png)).mode == "L"
