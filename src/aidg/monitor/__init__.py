"""The monitor: KPI windows, alerts and triggers, the promotion gate, the rollout controller (DESIGN §7)."""
