"""The cost ledger: every money effect of a return, append-only, and the reports on it."""
