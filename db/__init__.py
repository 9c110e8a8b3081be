"""SQLAlchemy 2.0 models, the session factory, repositories and Alembic migrations."""
