"""The failover switch: who may use the gateway right now, and the record of every change.

- ``machine``: the pure state machine, its persistence and the access policy.
- ``seen``: the version guard (which switch version each caller last looked at).
- ``audit``: the append-only, hash-chained audit trail.
- ``timeline``: incidents (periods in ``active``) read back from the audit trail.
- ``notify``: webhooks and the ICT email when the switch changes.
- ``directory``: a drill group looked up in Entra before a drill starts.
- ``controls``: the exports (audit trail, incidents) the admin page, API and CLI share.
"""
