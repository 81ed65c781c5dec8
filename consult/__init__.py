"""consult package."""
