"""Statements in each channel's real format, written from plain rows (for tests that inject findings)."""
from __future__ import annotations

from dataclasses import dataclass

WECHAT_HEADER = ("交易时间,公众账号ID,商户号,子商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,"
                 "总金额,代金券或立减优惠金额,微信退款单号,商户退款单号,退款金额,代金券或立减优惠退款金额,退款类型,退款状态,"
                 "商品名称,商户数据包,手续费,费率")
WECHAT_SUMMARY = "总交易单数,总交易额,总退款金额,总代金券或立减优惠退款金额,手续费总金额"
ALIPAY_HEADER = ("Partner_transaction_id|Transaction_id|Amount|Rmb_amount|Fee|Distribute_amount|Distribute_rmb_amount|"
                 "Settlement|Rmb_settlement|Currency|Rate|Payment_time|Settlement_time|Type|Status|Remarks")


@dataclass(frozen=True)
class Row:
    kind: str                 # payment | refund
    our_no: str               # order no (payment) or refund no (refund)
    amount: int               # minor units
    currency: str = "NZD"
    fee: int = 0
    status: str = "succeeded"  # succeeded | failed | closed
    order_no: str = ""        # a refund's order
    time: str = "2026-11-19 13:00:00"
    settlement: int | None = None


def _major(minor: int) -> str:
    sign = "-" if minor < 0 else ""
    return f"{sign}{abs(minor) // 100}.{abs(minor) % 100:02d}"


def wechat_bill(rows: list[Row], summary: bool = True) -> bytes:
    lines = [WECHAT_HEADER]
    for n, r in enumerate(rows):
        if r.kind == "payment":
            status = {"succeeded": "SUCCESS", "closed": "REVOKED", "failed": "REVOKED"}[r.status]
            cells = [r.time, "wxd930ea5d5a258f4f", "10000100", "20000100", "", f"4200{n:024d}", r.our_no, "oUser",
                     "NATIVE", status, "OTHERS", r.currency, _major(r.amount), "0.00", "0", "0", "0.00", "0.00", "",
                     "", "Honey, raw", "", _major(r.fee), "2.00%"]
        else:
            refund_status = {"succeeded": "SUCCESS", "failed": "FAIL", "closed": "FAIL"}[r.status]
            cells = [r.time, "wxd930ea5d5a258f4f", "10000100", "20000100", "", f"4200{n:024d}", r.order_no, "oUser",
                     "NATIVE", "REFUND", "OTHERS", r.currency, "99.00", "0.00", f"5030{n:025d}", r.our_no,
                     _major(r.amount), "0.00", "ORIGINAL", refund_status, "Honey", "", _major(-r.fee), "2.00%"]
        lines.append(",".join("`" + c for c in cells))
    if summary:
        lines.append(WECHAT_SUMMARY)
        lines.append(",".join("`" + c for c in (str(len(rows)), "0.00", "0.00", "0.00", "0.00")))
    return ("\n".join(lines) + "\n").encode("utf-8")


def alipay_file(rows: list[Row], settlement_time: str = "") -> bytes:
    lines = [ALIPAY_HEADER]
    for n, r in enumerate(rows):
        settled = r.settlement if r.settlement is not None else r.amount - r.fee
        status = {"succeeded": "L" if settlement_time else "P", "failed": "F", "closed": "F"}[r.status]
        lines.append("|".join([r.our_no, f"2026111922001{n:011d}", _major(r.amount), _major(r.amount * 5),
                               _major(r.fee), "0.0", "0.0", _major(settled), _major(settled * 5), r.currency,
                               "4.21000000", r.time, settlement_time, "P" if r.kind == "payment" else "R", status,
                               r.order_no or r.our_no]))
    return ("\n".join(lines) + "\n").encode("utf-8")


def payease_file(rows: list[Row], mid: str = "444") -> bytes:
    lines = ["# PayEase day list", "type|oid|refid|pstatus|amount|moneytype|fee|time|pmode|refreason"]
    for n, r in enumerate(rows):
        stamp = r.time.replace("-", "").replace(" ", "").replace(":", "")
        if r.kind == "payment":
            status = {"succeeded": "1", "failed": "3", "closed": "3"}[r.status]
            lines.append(f"PAY|20261119-{mid}-{r.our_no}||{status}|{_major(r.amount)}|0|{_major(r.fee)}|{stamp}|招商银行|")
        else:
            status = {"succeeded": "1", "failed": "2", "closed": "2"}[r.status]
            lines.append(f"REF|20261119-{mid}-{r.order_no}|R{n:04d}|{status}|{_major(r.amount)}|0|0.00|{stamp}||"
                         f"{r.our_no} partial")
    return ("\n".join(lines) + "\n").encode("gbk")


FORMATS = {"wechat": wechat_bill, "alipay": alipay_file, "payease": payease_file}
