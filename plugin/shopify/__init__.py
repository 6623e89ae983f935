"""Shopify's Admin API: one transport (client.py) and domain-shaped modules on top of it.

Nothing outside this package sees GraphQL transport details; GraphQL documents are
UPPER_SNAKE constants next to the code that sends them.
"""
