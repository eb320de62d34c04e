"""The arena's policy names, in the order its report lists them (a module of its own: the CLI's help text names them
without importing the policies and their libraries)."""

POLICIES = ("current", "greedy", "epsilon_greedy", "linucb", "vw", "ts", "risk_aware_ts", "latent_informed")

__all__ = ["POLICIES"]
