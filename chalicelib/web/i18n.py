"""English and Simplified Chinese for the shopper pages: the language from ?lang=, else Accept-Language."""
from __future__ import annotations

LANGS = ("en", "zh-CN")

MESSAGES: dict[str, dict[str, str]] = {
    "pay": {"en": "Pay", "zh-CN": "付款"},
    "pay_to": {"en": "Pay {name}", "zh-CN": "向 {name} 付款"},
    "store": {"en": "Store", "zh-CN": "门店"},
    "verified": {"en": "Verified merchant", "zh-CN": "已认证商户"},
    "amount_nzd": {"en": "Amount ({ccy})", "zh-CN": "金额（{ccy}）"},
    "amount_help": {"en": "Type the amount on the price tag, e.g. 12.50", "zh-CN": "请输入标价金额，例如 12.50"},
    "cny_hint": {"en": " · ≈ ¥{cny}", "zh-CN": " · 约 ¥{cny}"},
    "indicative": {"en": "CNY amounts are indicative: your wallet converts at its own rate.",
                   "zh-CN": "人民币金额仅供参考，以钱包实际汇率为准。"},
    "pay_wechat": {"en": "Pay with WeChat Pay", "zh-CN": "使用微信支付"},
    "pay_alipay": {"en": "Pay with Alipay", "zh-CN": "使用支付宝付款"},
    "no_wallet_here": {"en": "This wallet cannot pay here. Open this page in your phone's browser.",
                       "zh-CN": "此处无法使用该钱包付款，请在手机浏览器中打开此页面。"},
    "choose_wallet": {"en": "Choose your wallet", "zh-CN": "请选择支付方式"},
    "scan_title": {"en": "Scan to pay", "zh-CN": "扫码付款"},
    "scan_text": {"en": "Open WeChat or Alipay on your phone and scan this code.",
                  "zh-CN": "请用手机微信或支付宝扫描此二维码。"},
    "scan_native": {"en": "Scan this code with WeChat to pay.", "zh-CN": "请使用微信扫一扫完成付款。"},
    "open_wallet": {"en": "Continue to {wallet}", "zh-CN": "前往{wallet}"},
    "wechat": {"en": "WeChat Pay", "zh-CN": "微信支付"},
    "alipay": {"en": "Alipay", "zh-CN": "支付宝"},
    "payease": {"en": "online banking", "zh-CN": "网上银行"},
    "jsapi_wait": {"en": "Confirm the payment in WeChat…", "zh-CN": "请在微信中确认付款…"},
    "jsapi_nojs": {"en": "Open this page in WeChat to pay.", "zh-CN": "请在微信中打开此页面付款。"},
    "check_status": {"en": "I have paid: show the result", "zh-CN": "我已付款，查看结果"},
    "reference": {"en": "Reference", "zh-CN": "订单号"},
    "result_title": {"en": "Payment", "zh-CN": "支付结果"},
    "status_paid": {"en": "Paid", "zh-CN": "支付成功"},
    "status_failed": {"en": "Payment failed", "zh-CN": "支付失败"},
    "status_expired": {"en": "Payment expired", "zh-CN": "支付已过期"},
    "status_waiting": {"en": "Waiting for your payment…", "zh-CN": "等待付款…"},
    "status_paid_text": {"en": "Thank you. The merchant has your payment.", "zh-CN": "谢谢，商户已收到您的付款。"},
    "status_failed_text": {"en": "Nothing was charged. You can try again.", "zh-CN": "未扣款，您可以重新付款。"},
    "status_expired_text": {"en": "This payment can no longer be paid.", "zh-CN": "此订单已无法支付。"},
    "status_waiting_text": {"en": "This page updates by itself.", "zh-CN": "此页面会自动刷新。"},
    "try_again": {"en": "Try again", "zh-CN": "重新付款"},
    "back_to_merchant": {"en": "Back to the merchant", "zh-CN": "返回商户"},
    "not_found_title": {"en": "Code not found", "zh-CN": "未找到该二维码"},
    "not_found_text": {"en": "This code does not exist. Check with the shop.", "zh-CN": "该二维码不存在，请向商户确认。"},
    "gone_title": {"en": "Code no longer in use", "zh-CN": "该二维码已停用"},
    "gone_text": {"en": "This code has been disabled. Ask the shop for its current code.",
                  "zh-CN": "该二维码已停用，请向商户索取新的二维码。"},
    "payment_not_found": {"en": "There is no such payment.", "zh-CN": "未找到该订单。"},
    "throttled_title": {"en": "Too many attempts", "zh-CN": "操作过于频繁"},
    "throttled_text": {"en": "Please wait a minute and try again.", "zh-CN": "请稍候一分钟再试。"},
    "error_title": {"en": "Something went wrong", "zh-CN": "出错了"},
    "error_text": {"en": "The payment could not be started. Please try again.", "zh-CN": "无法发起支付，请重试。"},
    "amount_invalid": {"en": "Type an amount like 12.50.", "zh-CN": "请输入正确的金额，例如 12.50。"},
    "amount_above_code_maximum": {"en": "This amount is above the limit for this code.",
                                  "zh-CN": "金额超过此二维码的单笔限额。"},
    "amount_above_channel_maximum": {"en": "This amount is too large for the wallet.", "zh-CN": "金额超过钱包限额。"},
    "amount_below_channel_minimum": {"en": "This amount is too small for the wallet.", "zh-CN": "金额低于钱包下限。"},
    "fixed_amount": {"en": "Amount", "zh-CN": "金额"},
    "test_mode": {"en": "Test mode: no real money moves.", "zh-CN": "测试模式：不会产生真实扣款。"},
    "switch_lang": {"en": "中文", "zh-CN": "English"},
    "invoice": {"en": "Invoice", "zh-CN": "账单金额"},
    "locked_cny": {"en": "To pay in CNY", "zh-CN": "应付人民币"},
    "quote_valid": {"en": "This price is held until {time} UTC", "zh-CN": "此价格保留至 {time}（UTC）"},
    "quote_left": {"en": "left", "zh-CN": "剩余"},
    "quote_expired": {"en": "This exchange-rate quote has expired. Get a fresh quote to pay.",
                      "zh-CN": "汇率报价已过期，请获取新报价后付款。"},
    "fresh_quote": {"en": "Get a fresh quote", "zh-CN": "获取新报价"},
    "rate_line": {"en": "Rate {rate} CNY per {ccy}", "zh-CN": "汇率 1 {ccy} = {rate} 人民币"},
    "bank": {"en": "Your bank", "zh-CN": "付款银行"},
    "pay_bank": {"en": "Pay with online banking", "zh-CN": "网银付款"},
    "documents": {"en": "Supporting documents", "zh-CN": "证明材料"},
    "documents_none": {"en": "No documents yet.", "zh-CN": "尚未上传材料。"},
    "document_name": {"en": "Document name", "zh-CN": "文件名称"},
    "document_type": {"en": "File type", "zh-CN": "文件类型"},
    "document_next": {"en": "Next: choose the file", "zh-CN": "下一步：选择文件"},
    "document_file": {"en": "File (PDF, JPEG or PNG, up to 10 MB)", "zh-CN": "文件（PDF、JPEG 或 PNG，最大 10 MB）"},
    "document_invalid": {"en": "Give the document a name (letters, digits, spaces, . ( ) - _) and a type.",
                         "zh-CN": "请填写文件名称（字母、数字、空格、. ( ) - _）并选择类型。"},
    "other_banks": {"en": "Other banks", "zh-CN": "其他银行"},
    "upload": {"en": "Upload", "zh-CN": "上传"},
    "uploaded": {"en": "uploaded", "zh-CN": "已上传"},
    "waiting_upload": {"en": "not received yet", "zh-CN": "尚未收到"},
    "cancel": {"en": "Cancel", "zh-CN": "取消"},
    "pay_desc": {"en": "Payment to {name}", "zh-CN": "付款给 {name}"},
    # ---- merchant portal ----
    "portal_sign_in": {"en": "Sign in", "zh-CN": "登录"},
    "portal_sign_in_title": {"en": "Sign in to your Kauri portal", "zh-CN": "登录 Kauri 商户后台"},
    "portal_sign_out": {"en": "Sign out", "zh-CN": "退出登录"},
    "portal_email": {"en": "Email", "zh-CN": "电子邮箱"},
    "portal_password": {"en": "Password", "zh-CN": "密码"},
    "portal_sign_in_failed": {"en": "Wrong email or password.", "zh-CN": "邮箱或密码错误。"},
    "portal_throttled": {"en": "Too many failed sign-ins. Wait 15 minutes and try again.",
                         "zh-CN": "登录失败次数过多，请 15 分钟后再试。"},
    "portal_joined": {"en": "Your sign-in is ready. Sign in below.", "zh-CN": "账号已开通，请在下方登录。"},
    "portal_csrf_title": {"en": "This form has expired", "zh-CN": "表单已失效"},
    "portal_csrf_text": {"en": "Go back, reload the page and try again.", "zh-CN": "请返回并刷新页面后重试。"},
    "portal_forbidden_title": {"en": "Not for your role", "zh-CN": "无权访问"},
    "portal_forbidden_text": {"en": "Ask the owner of this business if you need this.",
                              "zh-CN": "如需此功能，请联系商户所有者。"},
    "portal_invitation_title": {"en": "Join your team on Kauri", "zh-CN": "加入 Kauri 商户团队"},
    "portal_invitation_text": {"en": "You are invited as {role} ({email}). Choose a password.",
                               "zh-CN": "您受邀成为{role}（{email}），请设置密码。"},
    "portal_invitation_expired": {"en": "This invitation has expired. Ask for a new one.",
                                  "zh-CN": "此邀请已过期，请重新申请邀请。"},
    "portal_invitation_unknown": {"en": "This invitation is not valid (or was already used).",
                                  "zh-CN": "此邀请无效或已被使用。"},
    "portal_new_password": {"en": "New password", "zh-CN": "新密码"},
    "portal_repeat_password": {"en": "Repeat the password", "zh-CN": "再次输入密码"},
    "portal_password_rules": {"en": "At least 10 characters, with lower-case letters and numbers.",
                              "zh-CN": "至少 10 个字符，需包含小写字母和数字。"},
    "portal_passwords_differ": {"en": "The two passwords differ.", "zh-CN": "两次输入的密码不一致。"},
    "portal_accept": {"en": "Join", "zh-CN": "加入"},
    "portal_nav_home": {"en": "Home", "zh-CN": "首页"},
    "portal_nav_staff": {"en": "Staff", "zh-CN": "员工"},
    "portal_role": {"en": "Role", "zh-CN": "角色"},
    "portal_role_owner": {"en": "owner", "zh-CN": "所有者"},
    "portal_role_manager": {"en": "manager", "zh-CN": "经理"},
    "portal_role_cashier": {"en": "cashier", "zh-CN": "收银员"},
    "portal_welcome": {"en": "Signed in as {email} ({role}).", "zh-CN": "当前登录：{email}（{role}）。"},
    "portal_suspended": {"en": "New payments are paused for this business. Refunds and payouts continue.",
                         "zh-CN": "本商户暂停收款，退款和结算照常进行。"},
    "portal_invite": {"en": "Invite a team member", "zh-CN": "邀请员工"},
    "portal_invited": {"en": "Invitation for {email} created", "zh-CN": "已创建给 {email} 的邀请"},
    "portal_invitation_link": {"en": "Send them this link (valid 3 days):", "zh-CN": "请将此链接发给对方（3 天内有效）："},
    "portal_invite_exists": {"en": "That person is already on the staff.", "zh-CN": "此人已是员工。"},
    "portal_invite_invalid": {"en": "Check the email address and role.", "zh-CN": "请检查邮箱和角色。"},
    "portal_staff": {"en": "Staff", "zh-CN": "员工"},
    "portal_sessions": {"en": "Signed-in devices", "zh-CN": "已登录设备"},
    "portal_this_device": {"en": "this device", "zh-CN": "本设备"},
    "portal_session_unknown": {"en": "That session has already ended.", "zh-CN": "该会话已结束。"},
    "portal_audit": {"en": "Audit trail", "zh-CN": "操作记录"},
    "portal_nav_spotpay": {"en": "SpotPay", "zh-CN": "SpotPay 收款"},
    "portal_either_wallet": {"en": "WeChat Pay or Alipay (one code)", "zh-CN": "微信或支付宝（同一码）"},
    "portal_scan_wechat": {"en": "Ask the shopper to scan with WeChat.", "zh-CN": "请顾客用微信扫码。"},
    "portal_scan_alipay": {"en": "Ask the shopper to scan with Alipay.", "zh-CN": "请顾客用支付宝扫码。"},
    "portal_scan_either": {"en": "Ask the shopper to scan with WeChat or Alipay.", "zh-CN": "请顾客用微信或支付宝扫码。"},
    "portal_new_sale": {"en": "New sale", "zh-CN": "新收款"},
    "portal_spotpay_failed": {"en": "The sale could not be started. Try again.", "zh-CN": "无法发起收款，请重试。"},
    "portal_not_found_title": {"en": "Not found", "zh-CN": "未找到"},
    "portal_not_found_text": {"en": "Nothing here for your business.", "zh-CN": "没有找到属于本商户的内容。"},

}


def pick(query_lang: str | None, accept_language: str | None) -> str:
    if query_lang in LANGS:
        return query_lang
    from decimal import Decimal, InvalidOperation  # q-values; not at `import app` (cold start)

    best, best_q = "en", Decimal(-1)
    for part in (accept_language or "")[:200].split(","):
        tag, _, params = part.strip().partition(";")
        q = Decimal(1)
        if params.strip().startswith("q="):
            try:
                q = Decimal(params.strip()[2:7])
            except InvalidOperation:
                continue
        tag = tag.strip().lower()
        lang = "zh-CN" if tag.startswith("zh") else "en" if tag.startswith("en") else None
        if lang and q > best_q:
            best, best_q = lang, q
    return best


def translator(lang: str):
    def t(key: str, **values) -> str:
        entry = MESSAGES.get(key)
        text = entry.get(lang) or entry["en"] if entry else key
        return text.format(**values) if values else text
    return t
