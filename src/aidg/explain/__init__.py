"""Explanations of the deal scorer: attention top-5, attributions, prototypes, rules, what-if."""
