"""The billing rules, pure: no I/O, and nothing of boto3, PynamoDB or pydantic.

``amounts`` and ``clock`` (exact units and UTC months), ``catalog`` (versioned prices), ``model``
(the records), ``lots`` (burn-down: the one writer of lots and totals), ``pricing`` (charge lines),
``posting`` (lines to ledger entries), ``accrual`` (what containers accrue), ``rollover`` (month
boundaries), ``settle`` (one function per platform event), ``credits`` (grants, purchases,
refunds), ``overuse`` (running out), ``projection`` (what a read shows), ``events`` (incoming events).
"""
