"""The ``ticketd`` command: ``main`` (set-up, run, deliver, check, demo) and one module per group of subcommands
(``admin``, ``attachments``, ``lookup``, ``privacy``, ``report``, ``status``), with what they share (``common``,
``views``, ``progress``), what ``init`` writes (``layout``) and the demo (``demo``, ``demo_mail/``).

May import every room; nothing imports it.
"""
