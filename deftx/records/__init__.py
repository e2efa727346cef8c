"""What training and evaluation write, and what the tables and the dashboard read: run directories
(``run.json``, ``metrics.jsonl``, ``results.json``), the experiment's progress, and provenance. Torch-free.
"""
