"""tagsmith evals package."""
