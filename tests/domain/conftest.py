"""The domain tier: billing rules on in-memory accounts, no DynamoDB, no AWS (runs in seconds:
``make test-domain``)."""
