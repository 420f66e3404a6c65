"""ISO 639-3 language codes (what Creovai sends) to Qualtrics language codes (`userLanguage`).

Only languages Qualtrics has a code for are listed (its `LanguageCode` enum); an interaction in
any other language simply carries no `userLanguage`. Macrolanguage codes (`zho`, `ara`, `nor`,
...) and their main individual languages (`cmn`, `arb`, `nob`, ...) map alike, because platforms
send either. Chinese maps to Simplified (`ZH-S`) except Cantonese (`yue`), which is mostly
written in Traditional characters (`ZH-T`). Regional variants (`EN-US`, `PT-BR`, `FR-CA`, ...)
cannot be told from an ISO 639-3 code, so the plain language code is used.
"""

from collections.abc import Mapping
from types import MappingProxyType

QUALTRICS_LANGUAGES: Mapping[str, str] = MappingProxyType(
    {
        "eng": "EN",
        "deu": "DE",
        "fra": "FR",
        "spa": "ES",
        "ita": "IT",
        "por": "PT",
        "nld": "NL",
        "jpn": "JA",
        "zho": "ZH-S",
        "cmn": "ZH-S",
        "yue": "ZH-T",
        "kor": "KO",
        "pol": "PL",
        "swe": "SV",
        "dan": "DA",
        "fin": "FI",
        "nor": "NO",
        "nob": "NO",
        "nno": "NO",
        "rus": "RU",
        "tur": "TR",
        "ara": "AR",
        "arb": "AR",
        "heb": "HE",
        "hin": "HI",
        "bul": "BG",
        "ben": "BN",
        "bos": "BS",
        "cat": "CA",
        "ceb": "CEB",
        "ces": "CS",
        "cym": "CY",
        "ell": "EL",
        "epo": "EO",
        "est": "ET",
        "ekk": "ET",
        "fas": "FA",
        "pes": "FA",
        "guj": "GU",
        "hil": "HIL",
        "hrv": "HR",
        "hun": "HU",
        "hye": "HYE",
        "ind": "ID",
        "isl": "ISL",
        "kan": "KAN",
        "kat": "KAT",
        "kaz": "KAZ",
        "khm": "KM",
        "lit": "LT",
        "lav": "LV",
        "lvs": "LV",
        "mal": "MAL",
        "mar": "MAR",
        "mkd": "MK",
        "mon": "MN",
        "khk": "MN",
        "msa": "MS",
        "zsm": "MS",
        "mya": "MY",
        "ori": "ORI",
        "ory": "ORI",
        "pan": "PA-IN",
        "ron": "RO",
        "sin": "SIN",
        "slk": "SK",
        "slv": "SL",
        "sqi": "SQI",
        "als": "SQI",
        "srp": "SR",
        "swa": "SW",
        "swh": "SW",
        "tam": "TA",
        "tel": "TEL",
        "tgl": "TGL",
        "fil": "TGL",
        "tha": "TH",
        "ukr": "UK",
        "urd": "UR",
        "vie": "VI",
        "asm": "ASM",
        "aze": "AZ-AZ",
        "azj": "AZ-AZ",
        "bel": "BEL",
    }
)


def qualtrics_language(iso_639_3: str | None) -> str | None:
    """The Qualtrics language code of an ISO 639-3 code, if Qualtrics has one."""
    if iso_639_3 is None:
        return None
    return QUALTRICS_LANGUAGES.get(iso_639_3.lower())
