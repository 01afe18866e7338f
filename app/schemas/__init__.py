"""marshmallow schemas: ``<Resource>Schema`` for output, ``...CreateSchema``/``...UpdateSchema``
for input (unknown fields are refused)."""
