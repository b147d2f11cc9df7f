"""The operational store: models, engine and migrations."""
