"""NZ direct-credit batch file, ANZ Direct / BNZ IB4B CSV layout (money-core §4.3).

    1,<subscriber id>,<batch no>,<null>,<subscriber account 15>,<batch type>,<due YYYYMMDD>,<created YYYYMMDD>,
    2,<account 16>,50,<cents>,<other party name 20>,<ref 12>,<analysis 12>,<alpha ref 12>,<particulars 12>,
      <subscriber name 20>,<subscriber analysis 12>,<subscriber ref 12>,<subscriber particulars 12>
    3,<total cents>,<count>,<hash total 11>

Hash total: the sum of each destination account's branch + base digits (positions 3-13 of the
16-digit number, read as one integer), rightmost 11 digits, zero-padded. The control-record field
order follows the ANZ Direct import layout; check it against the bank's current guide before go-live.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

STANDARD_CREDIT = "50"
MAX_AMOUNT_DIGITS = 11
_UNSAFE = re.compile(r"[^A-Za-z0-9 \-&/.()']")  # no commas or quotes inside a CSV field


class BankFileError(ValueError):
    pass


@dataclass(frozen=True)
class Credit:
    account: str          # 16 digits BBbbbbAAAAAAASSS (validated upstream)
    amount: int           # cents, > 0
    name: str             # payee name (other party)
    reference: str        # what the payee sees and what we match on the bank statement


@dataclass(frozen=True)
class BatchFile:
    text: str
    count: int
    total: int
    hash_total: str


def field(text: str, width: int) -> str:
    return _UNSAFE.sub("", text or "").strip()[:width].strip()


def hash_total(accounts: list[str]) -> str:
    total = sum(int(a[2:13]) for a in accounts)
    return str(total)[-11:].zfill(11)


def _fifteen(account16: str) -> str:
    """The 15-digit form BBbbbbAAAAAAASS some header fields take (2-digit suffix)."""
    if account16[13] != "0":
        raise BankFileError("subscriber account suffix does not fit two digits")
    return account16[:13] + account16[14:]


def render(credits: list[Credit], *, source_account: str, subscriber_name: str, due: date,
           created: date) -> BatchFile:
    if not credits:
        raise BankFileError("a batch file needs at least one credit")
    lines = [",".join(["1", "", "", "", _fifteen(source_account), "", due.strftime("%Y%m%d"),
                       created.strftime("%Y%m%d"), ""])]
    for c in credits:
        if len(c.account) != 16 or not c.account.isdigit():
            raise BankFileError(f"account must be 16 digits: {c.account!r}")
        if type(c.amount) is not int or c.amount <= 0 or len(str(c.amount)) > MAX_AMOUNT_DIGITS:
            raise BankFileError(f"amount must be 1..{10 ** MAX_AMOUNT_DIGITS - 1} cents")
        ref = field(c.reference, 12)
        lines.append(",".join([
            "2", c.account, STANDARD_CREDIT, str(c.amount), field(c.name, 20), ref, "", "", "KAURI PAYOUT"[:12],
            field(subscriber_name, 20), "", ref, "",
        ]))
    total = sum(c.amount for c in credits)
    if len(str(total)) > MAX_AMOUNT_DIGITS:
        raise BankFileError("batch total does not fit 11 digits: split the batch")
    ht = hash_total([c.account for c in credits])
    lines.append(",".join(["3", str(total), str(len(credits)), ht]))
    return BatchFile("\r\n".join(lines) + "\r\n", len(credits), total, ht)
