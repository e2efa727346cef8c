"""The dashboard's parts: tables, charts, trends and panels. Each updates only from its own methods."""
