"""PatchCore (Roth et al., 2022): locally aware patch features, coreset memory bank, nearest-neighbour scores."""
