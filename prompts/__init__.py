"""tagsmith prompts package."""
