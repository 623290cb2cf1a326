//! Build contexts as docker's CLI makes them: `.dockerignore` patterns with moby's
//! patternmatcher rules, Go's `filepath.Match`, and the tar stream sent to `/build`.
//! Shared by the CLI (which never links engine code) and the builder.

pub mod glob;
pub mod ignore;
pub mod tar;
