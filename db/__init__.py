"""Every SQL statement, one module per subject, and the ordered migrations (migrations/NNNN_name.sql,
applied by migrate.py). The case state machine and its allowed moves live here (cases.py)."""
