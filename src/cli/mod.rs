//! The `rescnn` subcommands, one module each; src/bin/rescnn.rs parses the command line and dispatches.

pub mod info;
