"""WeChat Official Account API (template messages to merchants' staff). Not a payment channel."""
