"""PostgreSQL, the system of record: typed models, engine set-up, embedded server and migrations."""
