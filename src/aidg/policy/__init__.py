"""Decisions: candidate deal variants (later: safety guard, risk-aware bandit, off-policy evaluation)."""
