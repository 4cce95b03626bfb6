"""ASGI plumbing shared by the layers and the endpoint: the pipeline, lifespans, reading and replaying
request bodies, sending responses."""
