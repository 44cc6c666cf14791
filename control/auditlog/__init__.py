"""The tenant's audit log: append-only rows of who did what to which resource, when and from where.

Writers (`control.auditlog.writer`) add rows for API requests, agents' tool calls and the retention
job; readers (`control.auditlog.query`) page, filter and export them. No code path updates or deletes a
row, and the database refuses to (migration 0003's trigger).
"""
