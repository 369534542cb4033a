"""Pictures: plots, EDA, run reports, keypoints on photos."""
