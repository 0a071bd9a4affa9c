"""Database layer: SQLAlchemy 1.4 models and sessions; the schema is managed by Alembic."""
