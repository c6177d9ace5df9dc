"""A real single-node Kubernetes for the tests, built from Debian's packages and the Go module proxy.

layout.py names every version, address and path; build.py compiles and caches the binaries and small images;
node.py brings the cluster up, reports and tears it down by PID; image.py builds the product's image from the
Dockerfile; servers.py starts the servers pods reach, inside the node's namespace. `python -m tests.cluster`
drives it by hand; conftest.py gives the tests a session-scoped `cluster`.
"""
