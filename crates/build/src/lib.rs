//! Dockerfile builds: our own parser (no maintained crate parses current Dockerfiles,
//! heredocs and parser directives included), docker's shell-word substitution, and the
//! builder that dispatches each instruction over a backend the daemon implements.

pub mod builder;
pub mod context;
pub mod dockerfile;
pub mod lex;
