"""Data: built-in tasks (NusaX-Senti, SmSA, AmericasNLI, English NLI), unlabelled text per language,
and any CSV/TSV/JSONL/text file, from a local data root or the Hugging Face hub.

Importing this package is light: no torch, transformers or datasets (the hub loader imports
``datasets`` when called).
"""

from deftx.data.inventory import describe_data
from deftx.data.labelled import LabelledData, load_labelled_file
from deftx.data.languages import LANGUAGES, canonical_language, language_name
from deftx.data.loading import load_task_split
from deftx.data.registry import DATA_DIR_ENV, TASKS, TaskSpec, get_task, resolve_data_dir
from deftx.data.text import TextSource, load_unlabelled_text, text_sources

__all__ = [
    "DATA_DIR_ENV",
    "LANGUAGES",
    "TASKS",
    "LabelledData",
    "TaskSpec",
    "TextSource",
    "canonical_language",
    "describe_data",
    "get_task",
    "language_name",
    "load_labelled_file",
    "load_task_split",
    "load_unlabelled_text",
    "resolve_data_dir",
    "text_sources",
]
