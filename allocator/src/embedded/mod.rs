//! Embedded engine (in progress by its owner).
