"""The dashboard's views: runs, live (one run), compare (evaluation results), and help."""
