"""airia-test-pod: proves a cluster's infrastructure is ready for the Airia platform."""

__version__ = "0.1.0"
