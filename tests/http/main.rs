//! In-process HTTP tests: the real router on a real database.
