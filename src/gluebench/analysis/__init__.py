"""Analyses over trained runs: the AX diagnostic by category, representation similarity across tasks, and
adapting GloVe vectors to a corpus. Each module is importable alone; heavy imports happen inside functions."""
