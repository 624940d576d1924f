//! Redis engine (in progress by its owner).
