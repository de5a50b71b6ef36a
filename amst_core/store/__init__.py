"""The run store: SQLAlchemy models, sessions, migrations and the metric writer (DESIGN.md sections 4-5)."""
