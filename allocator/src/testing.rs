//! Private redis-server for tests (in progress by its owner).
