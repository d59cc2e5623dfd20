"""Key material: parse, validate and convert what people put in Secrets (pure; no I/O)."""
