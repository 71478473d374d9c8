"""How mail comes in: ``scheduler`` runs IMAP intake of every mailbox with a few threads (one watching the IDLE
connections, the workers taking each mailbox's steps in ``mailbox``; ``plan`` says which are watched and which
polled); ``imap`` speaks IMAP (fetch, store raw, commit, then move out of the inbox). Every intake stores the raw
bytes first; the pipeline reads them later.

May import: ``daemon.pipeline`` and every room before it.
"""
