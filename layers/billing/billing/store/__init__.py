"""Storage on DynamoDB through PynamoDB: the keys, the models, the ledger (atomic, idempotent
changes), the idempotency records and the read queries."""
