"""Kaggle: the kaggle program and token, kernel metadata, the bundle and its runner, leaderboard."""
