"""tagsmith retrieval package."""
