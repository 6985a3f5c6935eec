"""tagsmith taxonomy package."""
