"""Services: one per job, each applying domain rules to stored accounts through the ledger
(settlement, sweeps, low-credit mail, purchases, grants, account settings)."""
