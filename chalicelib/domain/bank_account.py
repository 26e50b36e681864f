"""NZ bank account numbers: bank/branch check, IRD check digits, the BB-bbbb-AAAAAAA-SSS form.

python-stdnum (`stdnum.nz.bankaccount`) gives the parsing, the bank/branch register and the check
digits for algorithms A, B, D, F and X. For E and G the IRD text says to reduce each product by
summing its digits twice (18 -> 9); stdnum takes the product mod 9 (18 -> 0), so those two are
computed here by the literal rule (spec money-core §4.4). A branch unknown to stdnum's register is
still accepted when it lies in the IRD branch ranges (stdnum's register lacks e.g. bank 26).
"""
from __future__ import annotations

# IRD RWT/NRWT specification, bank number -> valid branch ranges.
IRD_BRANCHES: dict[str, tuple[tuple[int, int], ...]] = {
    "01": ((1, 999), (1100, 1199), (1800, 1899)),
    "02": ((1, 999), (1200, 1299)),
    "03": ((1, 999), (1300, 1399), (1500, 1599), (1700, 1799), (1900, 1999)),
    "06": ((1, 999), (1400, 1499)),
    "08": ((6500, 6599),),
    "09": ((0, 0),),
    "10": ((5165, 5169),),
    "11": ((5000, 6499), (6600, 8999)),
    "12": ((3000, 3299), (3400, 3499), (3600, 3699)),
    "13": ((4900, 4999),),
    "14": ((4700, 4799),),
    "15": ((3900, 3999),),
    "16": ((4400, 4499),),
    "17": ((3300, 3399),),
    "18": ((3500, 3599),),
    "19": ((4600, 4649),),
    "20": ((4100, 4199),),
    "21": ((4800, 4899),),
    "22": ((4000, 4049),),
    "23": ((3700, 3799),),
    "24": ((4300, 4349),),
    "25": ((2500, 2599),),
    "26": ((2600, 2699),),
    "27": ((3800, 3849),),
    "28": ((2100, 2149),),
    "29": ((2150, 2299),),
    "30": ((2900, 2949),),
    "31": ((2800, 2849),),
    "33": ((6700, 6799),),
    "35": ((2400, 2499),),
    "38": ((9000, 9499),),
}

# Weights over the IRD's 18 digits (bank 2 | branch 4 | base 8 | suffix 4) and the modulus.
_LITERAL = {
    "E": ((0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 4, 3, 2, 0, 0, 0, 1), 11),
    "G": ((0, 0, 0, 0, 0, 0, 0, 1, 3, 7, 1, 3, 7, 1, 0, 3, 7, 1), 10),
}


class InvalidBankAccount(ValueError):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def algorithm(number16: str) -> str:
    bank = number16[:2]
    if bank == "08":
        return "D"
    if bank == "09":
        return "E"
    if bank in ("25", "33"):
        return "F"
    if bank in ("26", "28", "29"):
        return "G"
    if bank == "31":
        return "X"
    return "A" if number16[6:13] < "0990000" else "B"


def _digit_sum(n: int) -> int:
    return sum(int(c) for c in str(n))


def literal_ird_total(number16: str) -> int:
    """Weighted total for algorithms E and G, each product reduced by summing its digits twice."""
    weights, _ = _LITERAL[algorithm(number16)]
    padded = number16[:6] + "0" + number16[6:13] + "0" + number16[13:]  # 2+4+8+4 digits
    return sum(_digit_sum(_digit_sum(w * int(d))) for w, d in zip(weights, padded))


def _in_ird_ranges(number16: str) -> bool:
    branch = int(number16[2:6])
    return any(lo <= branch <= hi for lo, hi in IRD_BRANCHES.get(number16[:2], ()))


def compact(text: str) -> str:
    """16 digits BBbbbbAAAAAAASSS (a 2-digit suffix is padded to 3)."""
    from stdnum.nz import bankaccount

    if not isinstance(text, str) or not text.strip():
        raise InvalidBankAccount("bank_account_invalid", "bank account is required")
    number = bankaccount.compact(text)
    if not number.isdigit() or not number.isascii():
        raise InvalidBankAccount("bank_account_invalid", "bank account must be digits in the form BB-bbbb-AAAAAAA-SSS")
    if len(number) != 16:
        raise InvalidBankAccount("bank_account_invalid", "bank account must have 15 or 16 digits (BB-bbbb-AAAAAAA-SSS)")
    return number


def validate(text: str) -> str:
    """The account as 16 digits, or InvalidBankAccount saying what is wrong."""
    from stdnum import exceptions
    from stdnum.nz import bankaccount

    number = compact(text)
    alg = algorithm(number)
    if alg in _LITERAL:
        if literal_ird_total(number) % _LITERAL[alg][1]:
            raise InvalidBankAccount("bank_account_check_digit", "bank account check digits do not match")
        known = "branch" in bankaccount.info(number)
    else:
        try:
            bankaccount.validate(number)
            known = True
        except exceptions.InvalidChecksum:
            raise InvalidBankAccount("bank_account_check_digit", "bank account check digits do not match") from None
        except exceptions.InvalidComponent:
            known = False          # check digits passed; only the register does not know the branch
        except exceptions.ValidationError:
            raise InvalidBankAccount("bank_account_invalid", "bank account is not a valid NZ account") from None
    if not known and not _in_ird_ranges(number):
        raise InvalidBankAccount("bank_account_branch", "unknown NZ bank or branch number")
    return number


def format(number16: str) -> str:  # noqa: A001 - the stdnum name, on purpose
    """BB-bbbb-AAAAAAA-SSS."""
    return f"{number16[:2]}-{number16[2:6]}-{number16[6:13]}-{number16[13:]}"


def normalise(text: str) -> str:
    """Validate and format: what we store on the merchant."""
    return format(validate(text))


def is_valid(text: str | None) -> bool:
    try:
        validate(text or "")
        return True
    except InvalidBankAccount:
        return False
