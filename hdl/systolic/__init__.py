"""Output-stationary systolic array (Atleus' 128x32 OS cores)."""
