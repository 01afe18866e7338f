"""I/O plugins: one module per connector, listed explicitly in ``connectors.registry``.

This package never imports ``flows``, ``app``, Flask or SQLAlchemy. A connector sees only the
``ConnectorContext`` it is handed.
"""
