"""The data before training: validation, near-duplicates, the split and the label review."""
