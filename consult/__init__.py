"""consult package: care-team communication (for now: video consultation requests, see requests.py)."""
