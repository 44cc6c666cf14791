"""Retention and erasure: hard deletion of a tenant's calls in every store, with a deletion certificate.

`purge.purge_calls` deletes the given calls from the live stores (the region's JetStream call stream
and call-state bucket, the recordings in the region's object store) and then the database (calls,
turns, events, recordings, usage, webhook deliveries of their events), and writes the certificate to
the audit log in the same transaction as the row deletions. `job` picks the calls: those past the
tenant's retention, or every call with one caller's number.
"""
