//! Handler tests: the router in-process (`tower::ServiceExt::oneshot`, no
//! socket) on a tiny random model written as a real GGUF file.

mod accounts;
mod common;
mod errors;
mod generation;
mod scheduling;
mod streaming;
