"""Flow definitions, validation, the engine, JSONata mapping and RQ job entry points."""
