"""Open-set scoring: Mahalanobis distance and acceptance thresholds (higher score = more unknown)."""
