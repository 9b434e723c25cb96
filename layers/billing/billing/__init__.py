"""Shared layer of the credit-billing back end.

``domain`` holds the pure rules, ``store`` the ledger on DynamoDB, ``services`` one module per job,
``api`` the HTTP side; ``adapters`` talk to EventBridge, SES and SQS; ``config`` and
``observability`` are shared by every function.
"""
