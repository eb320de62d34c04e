"""Compliance jobs over every store (DESIGN §8): the right to deletion (``erasure``), retention (``retention``)
and the membership-inference audit of the DP model (``audit``).

Import the submodules directly; this package imports nothing.
"""
