"""Shared layer of the credit-billing back end.

Pure billing rules (``amounts``, ``clock``, ``catalog``, ``burn_down``, ``engine``) do no I/O;
``ledger`` persists accounts on DynamoDB through PynamoDB; ``adapters`` talk to EventBridge and SES.
"""
