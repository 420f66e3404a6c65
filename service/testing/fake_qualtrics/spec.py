"""Enums and identifier formats, read from the survey-definitions OpenAPI spec [S].

Source: Konfig's copy of the "Qualtrics Survey API" 3.0.0 (qualtrics-api.md §0, SPEC). The
per-question-type tables come from the spec's `QuestionDefinition` variants (Multiple Choice,
Matrix, Text Entry, Slider, Descriptive Text, Graphic); types without a variant there only get the
global `QuestionSelector` / `QuestionSubSelector` enums.
"""

# ruff: noqa: SIM905 - see the comment above LANGUAGE_CODES

import re
import secrets
import string
from dataclasses import dataclass

PROJECT_CATEGORIES = frozenset({"CORE", "CX", "EX", "BX", "PX"})

# The enums are kept as space-separated words, in the spec's order, so they can be compared with
# the spec at a glance (a list literal would be one value per line).
LANGUAGE_CODES = frozenset(
    """AR ASM AZ-AZ BEL BG BN BS CA CEB CH CS CY DA DE EL EN_GB EN-US EN EO ES-ES ES ET FA FI
    FR-CA FR GU HE HE-ZA HI HIL HR HU HYE ID ISL IT JA KAN KAT KAZ KM KO LT LV MAL MAR MK MN MS
    MY NL NO ORI PA-IN PL PT-BR PT RO RU SIN SK SL SQI SR-ME SR SV SW TA TEL TGL TH TR UK UR VI
    ZH-S ZH-T""".split()
)

QUESTION_TYPES = frozenset(
    """MC Matrix Captcha CS DB DD Draw DynamicMatrix FileUpload GAP HeatMap HL HotSpot Meta PGR
    RO SBS Slider SS TE Timing TreeSelect""".split()
)

SELECTORS = frozenset(
    """Bipolar Browser Captcha CompactView CS D DL DND DragAndDrop ESTB FORM FileUpload GRB HBAR
    HR HSLIDER I Image LikeDislike Likert MACOL MAHR MAVR ML MSB MaxDiff NPS OH OnOff POS PTB PW
    PageTimer Profile RB RO SACOL SAHR SAVR SB SBSMatrix SL STAR ScreenCapture SearchOnly
    Signature TA TB TBelow TE TL TRight Text V1 V2 VR VRTL WTXB""".split()
)

SUB_SELECTORS = frozenset(
    """SingleAnswer DL GR DND Long Medium MultipleAnswer Columns NoColumns Short TX TXOT WOTXB
    WOTB WTB WVTB WTXB""".split()
)

# Selectors each spec variant allows. "DB" merges the Descriptive Text (TB) and Graphic (GRB)
# variants.
SELECTORS_BY_TYPE: dict[str, frozenset[str]] = {
    "MC": frozenset("DL GRB MACOL MAHR MAVR MSB NPS SACOL SAHR SAVR SB TB TXOT PTB".split()),
    "Matrix": frozenset("Bipolar Likert TE Profile CS RO MaxDiff".split()),
    "TE": frozenset("SL ML ESTB FORM PW".split()),
    "Slider": frozenset("HBAR HSLIDER STAR".split()),
    "DB": frozenset("TB GRB".split()),
}

# SubSelectors each variant requires ("Essay" is in the Matrix variant but not the global enum).
REQUIRED_SUB_SELECTORS_BY_TYPE: dict[str, frozenset[str]] = {
    "MC": frozenset("GR TX TXOT WOTXB WTXB".split()),
    "Matrix": frozenset(
        "DL DND Long Medium MultipleAnswer Short SingleAnswer WOTB WTB WVTB WTXB Essay".split()
    ),
}

# Variants that declare no SubSelector at all: sending one is a bad combination.
TYPES_WITHOUT_SUB_SELECTOR = frozenset({"TE", "DB"})

# Variants whose QuestionDescription has maxLength 100 (the MC variant sets none).
TYPES_WITH_SHORT_DESCRIPTION = frozenset({"Matrix", "TE", "Slider", "DB"})

QUESTION_TEXT_MAX = 1000
SHORT_TEXT_MAX = 100

# MC selectors whose answer is a set of choices; every other MC selector picks one [U: inferred
# from the selector names: MA* = multiple answer, MSB = multi-select box].
MULTI_ANSWER_SELECTORS = frozenset({"MAVR", "MAHR", "MACOL", "MSB"})

FLOW_TYPES = frozenset(
    """Authenticator Block BlockRandomizer Branch Conjoint EmbeddedData EndSurvey Group
    QuotaCheck ReferenceSurvey Root Standard SupplementalData TableOfContents WebService""".split()
)
BLOCK_FLOW_TYPES = frozenset({"Block", "Standard"})
FLOW_MAX_ELEMENTS = 5000

EMBEDDED_DATA_TYPES = frozenset({"Recipient", "Custom", "EmbeddedData"})
VARIABLE_TYPES = frozenset(
    {"Nominal", "MultiValueNominal", "Ordinal", "Scale", "String", "Date", "FilterOnly"}
    | {"Filter Only"}
)

SURVEY_STATUSES_SETTABLE = frozenset({"Active", "Inactive"})
MYSQL_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")


@dataclass(frozen=True, slots=True)
class IdFormat:
    """One identifier kind: its name in error messages and its pattern (matched in full)."""

    name: str
    pattern: re.Pattern[str]

    def matches(self, value: str) -> bool:
        return self.pattern.fullmatch(value) is not None


SURVEY_ID = IdFormat("survey", re.compile(r"SV_[a-zA-Z0-9]{11,15}"))
BLOCK_ID = IdFormat("block", re.compile(r"BL_[a-zA-Z0-9]{11,15}"))
QUESTION_ID = IdFormat("question", re.compile(r"QID[a-zA-Z0-9]+"))
FLOW_ID = IdFormat("flow", re.compile(r"FL_[1-9][0-9]*"))
VERSION_ID = IdFormat("version", re.compile(r"[0-9]+"))
# [U] the spec has no ResponseID pattern; real ids are `R_` + 15 alphanumerics (GEN docstring).
RESPONSE_ID = IdFormat("response", re.compile(r"R_[a-zA-Z0-9]{11,15}"))

_ALPHANUMERIC = string.ascii_letters + string.digits


def new_id(prefix: str, length: int = 15) -> str:
    """A fresh random identifier such as `SV_` + 15 alphanumerics."""
    return prefix + "".join(secrets.choice(_ALPHANUMERIC) for _ in range(length))
