//! Handler tests: the router in-process (`tower::ServiceExt::oneshot`, no
//! socket) on a tiny random model written as a real GGUF file.

mod accounts;
mod choices;
mod common;
mod errors;
mod generation;
mod logprobs;
mod openings;
mod scheduling;
mod streaming;
mod timeouts;
