"""Privacy building blocks (DESIGN §8): DP-SGD with the merchant as the privacy unit (``dp``), keyed hashes of
merchant ids for logs (``ids``), encryption at rest (``crypto``) and consent flags (``consent``).

Import the submodules directly; this package imports nothing so that each stays light.
"""
