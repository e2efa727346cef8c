"""Language codes (ISO 639-3, as the data sets spell them), English names and accepted aliases."""

from __future__ import annotations

import re
import unicodedata

from deftx.errors import UnknownNameError

# code -> English name. NusaX first (its order), then AmericasNLI.
LANGUAGES: dict[str, str] = {
    "ace": "Acehnese",
    "ban": "Balinese",
    "bbc": "Toba Batak",
    "bjn": "Banjarese",
    "bug": "Buginese",
    "mad": "Madurese",
    "min": "Minangkabau",
    "nij": "Ngaju",
    "jav": "Javanese",
    "sun": "Sundanese",
    "ind": "Indonesian",
    "eng": "English",
    "aym": "Aymara",
    "bzd": "Bribri",
    "cni": "Asháninka",
    "grn": "Guaraní",
    "hch": "Wixarika",
    "nah": "Nahuatl",
    "oto": "Otomí",
    "quy": "Quechua",
    "shp": "Shipibo-Konibo",
    "tar": "Rarámuri",
}

# NusaX directory (and NusaX-MT column) name of each NusaX language.
NUSAX_DIRS: dict[str, str] = {
    "ace": "acehnese",
    "ban": "balinese",
    "bbc": "toba_batak",
    "bjn": "banjarese",
    "bug": "buginese",
    "mad": "madurese",
    "min": "minangkabau",
    "nij": "ngaju",
    "jav": "javanese",
    "sun": "sundanese",
    "ind": "indonesian",
    "eng": "english",
}

# NusaWrites spells Toba Batak "btk"; the others are the ISO codes.
NUSAWRITES_CODES: dict[str, str] = {"jav": "jav", "sun": "sun", "min": "min", "mad": "mad", "bug": "bug", "bbc": "btk"}

AMERICASNLI_LANGUAGES: tuple[str, ...] = ("aym", "bzd", "cni", "grn", "hch", "nah", "oto", "quy", "shp", "tar")
# AmericasNLI and AmericasNLP name their files (and hub configurations) by these codes where they differ
# from ISO 639-3: Guarani is "gn" (ISO 639-1) there.
AMERICAS_FILE_CODES: dict[str, str] = {"grn": "gn"}
NUSAX_LANGUAGES: tuple[str, ...] = tuple(NUSAX_DIRS)

# Other spellings people use: ISO 639-1/-3 variants, data-set labels and alternative names.
_EXTRA_ALIASES: dict[str, str] = {
    "gn": "grn",
    "btk": "bbc",
    "batak": "bbc",
    "toba": "bbc",
    "banjar": "bjn",
    "ashaninka": "cni",
    "hnahnu": "oto",
    "otomi hnahnu": "oto",
    "shipibo": "shp",
    "huichol": "hch",
    "tarahumara": "tar",
    "id": "ind",
    "en": "eng",
    "jv": "jav",
    "su": "sun",
    "qu": "quy",
    "ay": "aym",
}


def _key(text: str) -> str:
    """Case-, accent- and separator-insensitive form of a language code or name."""
    decomposed = unicodedata.normalize("NFKD", text.strip().casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return re.sub(r"[\s_\-]+", " ", plain)


_ALIASES: dict[str, str] = {
    **{_key(code): code for code in LANGUAGES},
    **{_key(name): code for code, name in LANGUAGES.items()},
    **{_key(dirname): code for code, dirname in NUSAX_DIRS.items()},
    **{_key(alias): code for alias, code in _EXTRA_ALIASES.items()},
}


def canonical_language(code_or_name: str) -> str:
    """The ISO 639-3 code for a code, alias or English name (``"Quechua"`` -> ``"quy"``, ``"gn"`` -> ``"grn"``)."""
    key = _key(code_or_name)
    if key in _ALIASES:
        return _ALIASES[key]
    raise UnknownNameError(
        "language", key, _ALIASES, hint=f"known languages: {', '.join(LANGUAGES)} (or their English names)"
    )


def language_name(code: str) -> str:
    """The English name of a language (``"quy"`` -> ``"Quechua"``)."""
    return LANGUAGES[canonical_language(code)]
