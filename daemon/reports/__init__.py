"""Periodic reports: the figures from the database (``data``, ``figures``), the workbook (``xlsx``, ``sheets``,
``texts``), the charts (``charts``) and the scheduled report mail (``mail``).

May import: ``daemon.config``, ``daemon.service``, ``daemon.outgoing`` and the lower packages.
"""
