"""Every mail ticketd writes: composed from a template (``notify``), queued as an outbox row in the caller's
transaction (``outbox``), built into bytes (``wire``, ``files``, ``outbox_parts``), held back when a robot or a
burst would make us answer forever (``storm``), and sent after commit. ``smtp_sink`` is the demo's and the tests'
SMTP peer.

May import: ``daemon.config``, ``daemon.service`` and the lower packages.
"""
