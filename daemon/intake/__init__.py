"""How mail comes in: ``threads`` runs one thread per mailbox (lease, connect, wait, again); ``imap`` speaks IMAP
(fetch, store raw, commit, then move out of the inbox). Every intake stores the raw bytes first; the pipeline
reads them later.

May import: ``daemon.pipeline`` and every room before it.
"""
