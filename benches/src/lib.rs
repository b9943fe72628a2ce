//! Placeholder: this crate is filled in by its own issue.
