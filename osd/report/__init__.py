"""Summary table, plots and a self-contained HTML report, rebuilt from cached artifacts only."""
