"""Pictures of the competition: plots, EDA, run reports."""
