"""Scoring: ShapesEval (exact, from pixels), reconstruction metrics, FID, captions."""
