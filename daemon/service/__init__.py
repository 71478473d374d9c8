"""What a long-running service needs from its surroundings and gives back: logs, metrics, systemd's
notifications, OAuth2 logins, the leases instances share, and the privacy jobs (export, erase, raw-mail purge).

May import: ``daemon.config`` and the lower packages (parsers, storage, rules). Every other room may import it.
"""
