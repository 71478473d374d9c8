"""What happens to a ticket: the stages of one message's trip (``conversation`` holds the shared ones; then
``customer_mail``, ``agent_mail``, ``bounce_mail``, ``loops``, ``new_ticket``, ``closing``, ``digest``), and the
same changes made by a timer (``sweep``) or by an operator (``handover``).

May import: ``daemon.config``, ``daemon.service``, ``daemon.outgoing``, ``daemon.reports`` and the lower packages.
``daemon/pipeline.py`` puts the stages in order.
"""
