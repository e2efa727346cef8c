"""The ``deftx tui`` dashboard: runs, a live view of one run, and the LT-SFT vs DeFT-X comparison.

It reads only the run directories described in :mod:`deftx.records.runs` and never imports torch or
transformers. Entry points: :func:`deftx_cli.tui.app.run_dashboard` and
:class:`deftx_cli.tui.app.DeftxDashboard`.

Nothing is imported here so that the pure modules (``compare``, ``progress``, ``series``) can be
used without loading Textual.
"""
