"""Sample-quality metrics on feature vectors: FID, KID, precision/recall and novelty (copies)."""
