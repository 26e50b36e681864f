"""PayEase (首信易支付) online-banking channel: signing, client, notify, statement, sandbox."""
