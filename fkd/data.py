"""Competition files in (training/test as .csv or Kaggle's .zip), validated, cached as .npy."""
