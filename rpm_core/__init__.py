"""rpm_core package."""
