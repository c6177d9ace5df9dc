"""The web service: the dashboard pages, the JSON API and the pod's own status routes."""
