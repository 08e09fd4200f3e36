"""The HTTP edge: the voice webhook routes, the webhook request and its payload, signatures, errors and status."""
