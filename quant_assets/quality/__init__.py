"""Data quality: row rules and their pandera schemas, the quarantine gate, the coverage ledger, reconciliation."""
