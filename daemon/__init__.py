"""The daemon: the rooms that turn stored mail into tickets and mail, and the two front doors.

``pipeline.py`` is one message's trip as a list of stages; ``runner.py`` is the daemon's main loop. The rooms, each
allowed to import only the rooms listed before it (and ``parsers``, ``storage``, ``rules``, ``mailtemplates``)::

    config → service → outgoing → reports → stages → pipeline.py → intake → runner.py → cli

Below the daemon the same holds: ``parsers → storage → rules → mailtemplates``, and none of them imports the daemon
(the rules take what they need of the configuration as values the config builds). ``tests/unit/test_imports.py``
enforces the whole order, imports inside functions included, and fails on any import cycle.
"""
