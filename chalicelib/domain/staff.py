"""Who may do what in a merchant's portal."""
from __future__ import annotations

OWNER, MANAGER, CASHIER = "owner", "manager", "cashier"
ROLES = (OWNER, MANAGER, CASHIER)

# owner: everything; manager: refunds, codes, staff alerts, no keys or bank details; cashier: SpotPay and today.
_CAN = {
    OWNER: {"today", "spotpay", "payments", "refund", "codes", "alerts", "balance", "bank", "developers", "staff",
            "audit"},
    MANAGER: {"today", "spotpay", "payments", "refund", "codes", "alerts", "balance"},
    CASHIER: {"today", "spotpay"},
}


def can(role: str, permission: str) -> bool:
    return permission in _CAN.get(role, set())


def may_invite(inviter_role: str, role: str) -> bool:
    """Owners invite anyone (another owner too); nobody else invites."""
    return inviter_role == OWNER and role in ROLES
