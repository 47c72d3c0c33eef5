"""After the model: metrics, thresholds, gates and stacking, blending, submission writing and validation."""
