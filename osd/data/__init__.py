"""Data layer: image decoding, NEU and Severstal indexing, splits, synthetic demo data."""
