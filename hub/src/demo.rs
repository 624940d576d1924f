//! Demo batch generator (in progress by its owner).
