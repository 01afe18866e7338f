"""Use-cases. Each owns its transaction and raises ``app.errors.ServiceError`` subclasses."""
