"""The fleet dashboard: HTML pages and their static files, served by the fleet API (see routes.py)."""
