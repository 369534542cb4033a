"""The competition folder: files found, parsed and cached; duplicates, folds, shapes, synthetic faces."""
