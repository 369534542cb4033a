"""Training: the loop, its labels, pseudo-labels, K-fold CV, prediction, and the run folder."""
