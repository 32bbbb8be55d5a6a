"""Training: stage 1 (encoders aligned to an anchor) and stage 2 (ProM3E), losses, masking."""
