"""WeChat Pay (API v2, overseas institution mode with sub_mch_id).

signing: the v2 signature; wire: XML and UTC+8 times; client: the Channel; notify: payment
callbacks; statement: downloadbill text -> standard records; sandbox: a simulator of the server.
"""
