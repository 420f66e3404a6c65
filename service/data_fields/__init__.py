"""Data fields (design §4): what an integration sends to Qualtrics, and how it looks there.

Pure modules, no I/O:

- `schemas`: `DataField`, `DataFieldSelection` and their enums; the preview models.
- `validation`: `validate_selection` against the catalogue, `ALLOWED_FORMATS`.
- `targets`: each field's Qualtrics question definition or embedded-data declaration, and its
  stable `target_key` (the key of the project's field map).
- `encoding`: an interaction → the `values` of a create-response request, via a compiled plan.
- `languages`: ISO 639-3 → Qualtrics language codes.
"""
