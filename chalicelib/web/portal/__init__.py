"""The merchant portal (issue 11): one module per area; every page goes through portal.common."""
